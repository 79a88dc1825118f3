"""Run inside the deepprivacy2 env twin by tests/test_stacks_realistic.py (Python 3.9, torch 1.13.1).

``checkpoints ROOT OUT SEED RESULT``: one random-weight checkpoint per pinned generator, built by
dp2's own ``load_config`` + ``instantiate`` from its configs in the checkout ROOT and saved as
dp2's loader reads it (``load_generator_state``): the generator's weights under
``EMA_generator``, w cluster centres (top level for the faces, ``style_net.w_centers`` in the
state for TriA-GAN: both places dp2 reads), TriA-GAN's ``to_rgb`` under the name its
``ckpt_mapper`` maps. RESULT gets {name: {path, md5, parameters}}.

``anonymize JOB RESULT``: rule anonymize_shard_realistic's calls (scripts/anonymize_shard.py),
for each group of JOB (one generator settings, several variants): ``apply_keypoints``,
``prepare_generators`` once, then per variant ``build_realistic`` and ``anonymize_shard``.
Every synthesis is timed; dp2's loading warnings and the CPU estimate are recorded; every
tensor of the loaded generators is compared with its checkpoint's. RESULT gets one entry per
variant.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

from anonymization_impact.io import file_digest, read_json, write_json_atomic
from anonymization_impact.keypoints import apply_keypoints
from anonymization_impact.realistic.deepprivacy2 import GENERATORS
from anonymization_impact.realistic.loading import prepare_generators
from anonymization_impact.realistic.method import build_realistic
from anonymization_impact.trees import anonymize_shard, persons_in_shard
from anonymization_impact.variants import Variant

CENTRES = 16
# TriA-GAN's checkpoints name its output layer per resolution; its ckpt_mapper renames it
TRIAGAN_TO_RGB = "decoder.to_rgb.3"


def checkpoints(root: Path, out: Path, seed: int) -> dict:
    sys.path.insert(0, str(root))
    from dp2.utils import load_config
    from tops.config import instantiate

    made = {}
    for name, spec in GENERATORS.items():
        torch.manual_seed(seed)
        generator = instantiate(load_config(str(root / spec.config)).generator).eval()
        state = dict(generator.state_dict())
        with torch.no_grad():
            centres = generator.style_net(torch.randn(CENTRES, generator.style_net.z_dim))
        checkpoint = {"EMA_generator": state}
        if spec.region == "body":
            for suffix in ("weight", "bias"):
                state[f"{TRIAGAN_TO_RGB}.{suffix}"] = state.pop(f"decoder.to_rgb.{suffix}")
            state["style_net.w_centers"] = centres
        else:
            checkpoint["w_centers"] = centres
        path = out / f"random_{name}.ckpt"
        torch.save(checkpoint, str(path))
        made[name] = {"path": str(path), "md5": file_digest(path, "md5"), "parameters": sum(p.numel() for p in generator.parameters())}
    return made


def weights_that_differ(generator, checkpoint_path: str) -> list[str]:
    """Tensors of the loaded generator that are not its checkpoint's (renamed as dp2's mapper does)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    state = {key.replace(TRIAGAN_TO_RGB, "decoder.to_rgb"): value for key, value in checkpoint["EMA_generator"].items()}
    if "w_centers" in checkpoint:
        state["style_net.w_centers"] = checkpoint["w_centers"]
    return [key for key, value in generator.module.state_dict().items() if key not in state or not torch.equal(value.cpu(), state[key])]


class Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def anonymize(job: dict) -> dict:
    results = {}
    for group in job["groups"]:
        persons = read_json(job["persons"])
        if job.get("keypoints"):
            apply_keypoints(persons, read_json(job["keypoints"]))
        faces = read_json(job["faces"]) if job.get("faces") else None
        log, captured = logging.getLogger("anonymize_shard"), Captured()
        log.addHandler(captured)
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generators, device = prepare_generators(group["generators"], group["weights"], job["dp2_root"], persons_in_shard(persons, 0, 1), log)
        loaded = time.perf_counter() - started
        differing = {role: weights_that_differ(generators[size], group["weights"][role])
                     for role, size in zip(group["generators"]["roles"], generators)}
        for name, settings in group["variants"].items():
            variant = Variant(name, settings)
            method = build_realistic(variant.settings, generators, device)
            timings, synthesize = [], method.synthesize

            def timed(*args, **kwargs):
                begin = time.perf_counter()
                pixels = synthesize(*args, **kwargs)
                timings.append(time.perf_counter() - begin)
                return pixels

            method.synthesize = timed
            started = time.perf_counter()
            audit = anonymize_shard(root=Path(job["root"]), persons=persons, faces=faces, variant=variant.settings, method=method,
                                    shard=0, shards=1, output_dir=Path(job["output"]) / name, leak_check_images=job["leak_check_images"],
                                    hide_pending=job["hide_pending"])
            results[name] = {"audit": audit, "device": device, "shard_seconds": time.perf_counter() - started,
                             "synthesis_seconds": timings, "load_seconds": loaded, "log": captured.messages,
                             "warnings": [str(w.message) for w in caught], "weights_differing": differing}
        log.removeHandler(captured)
    return results


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "checkpoints":
        result = checkpoints(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        result = anonymize(json.loads(Path(sys.argv[2]).read_text()))
    write_json_atomic(Path(sys.argv[-1]), result)
