# Regions to anonymize: face boxes (DSFD or the authors' files, matched to the persons) and,
# for Cityscapes / BDD100K bodies, keypoints (ViTPose-H or the authors' files).


rule match_faces:
    input:
        detections=get_face_detections,
        persons="results/annotations/{dataset}/train/persons.json",
    output:
        "results/regions/{dataset}/faces.json",
    log:
        "logs/regions/{dataset}/faces.log",
    benchmark:
        "benchmarks/regions/{dataset}/faces.tsv"
    conda:
        "../envs/anonymize.yaml"
    envmodules:
        env_module("anonymize"),
    params:
        confidence=config_at("face_detection/confidence/{dataset}"),
        min_iou=config["face_detection"]["min_match_iou"],
    script:
        "../scripts/match_faces.py"


rule detect_faces:
    input:
        persons="results/annotations/{dataset}/train/persons.json",
        raw=get_raw_dataset_inputs,
        weights=get_detector_weights("face_detection"),
    output:
        "results/faces/{dataset}/detections.json",
    log:
        "logs/faces/{dataset}/detections.log",
    benchmark:
        "benchmarks/faces/{dataset}/detections.tsv"
    conda:
        "../envs/detectors.yaml"
    envmodules:
        env_module("detectors"),
    resources:
        runtime=get_runtime("detect_faces"),
    params:
        job=command_job(
            root=get_dataset_root,
            # the lowest threshold: match_faces applies each dataset's own
            confidence=min(config["face_detection"]["confidence"].values()),
            nms_iou=config["face_detection"]["nms_iou"],
            device=config["face_detection"]["device"],
            weights_entry=lambda wildcards: detector_weights("face_detection"),
        ),
    shell:
        command("detect_faces")


rule detect_keypoints:
    input:
        persons="results/annotations/{dataset}/train/persons.json",
        raw=get_raw_dataset_inputs,
        weights=get_detector_weights("keypoint_detection"),
    output:
        "results/regions/{dataset}/keypoints-vitpose.json",
    log:
        "logs/regions/{dataset}/keypoints-vitpose.log",
    benchmark:
        "benchmarks/regions/{dataset}/keypoints-vitpose.tsv"
    wildcard_constraints:
        dataset=alternatives(sorted(set(DATASETS) - set(KEYPOINT_ANNOTATED_DATASETS))),
    conda:
        "../envs/detectors.yaml"
    envmodules:
        env_module("detectors"),
    resources:
        runtime=get_runtime("detect_keypoints"),
    params:
        job=command_job(
            root=get_dataset_root,
            score_threshold=config["regions"]["keypoint_score_threshold"],
            device=config["keypoint_detection"]["device"],
            weights_entry=lambda wildcards: detector_weights("keypoint_detection"),
        ),
    shell:
        command("detect_keypoints")


# The authors' published files (regions.source: authors): one script imports each kind.
rule import_authors_face_detections:
    input:
        unpack(authors_inputs("faces")),
    output:
        "results/faces/{dataset}/authors-detections.json",
    log:
        "logs/faces/{dataset}/authors-detections.log",
    wildcard_constraints:
        dataset="cityscapes|bdd100k",
    conda:
        "../envs/anonymize.yaml"
    envmodules:
        env_module("anonymize"),
    params:
        root=get_dataset_root,
        files=config_at("regions/authors_files/{dataset}"),
        max_misfit_fraction=config["regions"]["max_misfit_fraction"],
        # our own thresholds: face boxes must match again as match_faces will match them,
        # keypoints are visible as this workflow decides
        min_match_iou=config["face_detection"]["min_match_iou"],
        score_threshold=config["regions"]["keypoint_score_threshold"],
    script:
        "../scripts/import_authors_regions.py"


use rule import_authors_face_detections as import_authors_face_regions with:
    output:
        "results/regions/{dataset}/faces-authors.json",
    log:
        "logs/regions/{dataset}/faces-authors.log",
    wildcard_constraints:
        dataset="coco",


use rule import_authors_face_detections as import_authors_keypoints with:
    input:
        unpack(authors_inputs("keypoints")),
    output:
        "results/regions/{dataset}/keypoints-authors.json",
    log:
        "logs/regions/{dataset}/keypoints-authors.log",
