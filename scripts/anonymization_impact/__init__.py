"""Library behind the workflow's rules: config, dataset parsers, synthetic twins, figures.

Rule scripts in ``scripts/`` are thin wrappers around this package; Snakemake puts the
script directory on ``sys.path``, so the package imports from every rule (also under
``--sdm conda``), and pytest imports it through ``pythonpath = ["scripts"]``.
"""

DATASETS = ("coco", "cityscapes", "bdd100k")
SPLITS = ("train", "val")
# the evaluation task of each detector architecture
TASKS = {"mask_rcnn": "instance_segmentation", "keypoint_rcnn": "keypoints"}
# datasets whose annotations carry person keypoints; the others get them from a pose estimator
KEYPOINT_ANNOTATED_DATASETS = ("coco",)
