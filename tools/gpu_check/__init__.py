"""One-shot check of this project's CUDA code paths on the Cityscapes twin (training,
prediction, realistic anonymization), with CPU comparisons.

Three modes, from the repository root:

  python3 -m tools.gpu_check --prepare            # HERE (the project's .venv): build the inputs
  python3 -m tools.gpu_check OUTDIR [options]     # on the GPU machine (or --device cpu here)
  python3 -m tools.gpu_check --evaluate DIR       # HERE: score the predictions the device wrote

``--prepare`` writes ``resources/gpu_check/`` (git-ignored; carry it to the device): a Cityscapes
twin made by the current code, its normalized annotations, the simulated keypoints of its
training persons, the backbone-pretraining images, the twins' pre-trained ResNet-10 backbone
(rule pretrain_backbone's job, run here on the CPU with the config's 800 iterations, ~1.5 min)
and ``settings.json``: the training, pretraining and generator settings the workflow's plan
gives the rules (``anonymization_impact.plan``; the device has neither jsonschema,
cityscapesscripts nor snakemake, so only --prepare plans) and the config values the check
needs. The check calls the same package functions as the rules (pretrain_backbone,
train_model, predict, anonymize_shard_realistic), never snakemake. Where pycocotools is missing
(the device) a pure-Python RLE codec stands in for ``pycocotools.mask`` (``--prepare`` proves
it equal to pycocotools on every mask of the inputs).

Sections (each caught and reported on its own; JSON lines on stdout, progress on stderr,
``OUTDIR/summary.json`` at the end; exit status 1 if a section raised, e.g. a non-finite loss,
3 on the hard timeout):

  env           versions, GPU, determinism flags, whether roi_align goes through torch.compile
  roi_align     (cuda) the deterministic roi_align path the training takes, forward + backward
  pretrain      pretrain_backbone's job (from scratch, all stages), --pretrain-iters, on the
                device; its backbone must load as initial weights
  train_fp32    train_model's job (twins' schedule, mask_rcnn_r50_fpn -> narrow resnet10, seed 0,
                --iters = the config's 300) from the carried backbone: the demo's run, on the device
  predict       predict's call on the val split (device, and CPU with the same weights)
  cpu_rate      (cuda) the same job on the CPU with all cores, a few iterations: s / iteration
  realistic     twin person renderer, multi-modal truncation and HM-LO, on CPU and CUDA
  train_amp     (cuda) the fp32 job with amp: true (bfloat16 autocast), and its predictions
  determinism   a --check-iters job twice: weight bytes equal?
  resume        that job interrupted after its half-way checkpoint and run again: equal?

Files in OUTDIR (at most 7): summary.json, pred_*.json (COCO results on the val split),
model_<device>_fp32.pth, realistic_montage.png.

Modules: __main__ (options, the three modes), prepare, evaluate, check (what the sections
share), environment / training_runs / prediction / realistic (the sections), reporting,
coco_mask (the RLE stand-in).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INPUTS = REPO / "resources" / "gpu_check"
DATASET, MODEL, SEED = "cityscapes", "mask_rcnn_r50_fpn", 0  # the twin run the check repeats on the device
VARIANTS = ("body-realistic", "body-realistic-hmlo")

if str(REPO / "scripts") not in sys.path:  # the project's package, where pyproject puts it for pytest
    sys.path.insert(0, str(REPO / "scripts"))
