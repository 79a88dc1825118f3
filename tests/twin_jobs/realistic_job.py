"""Run inside the deepprivacy2 env twin by the stacks tests (tests/stacks.py, tests/test_stacks_realistic.py;
Python 3.9, torch 1.13.1).

``checkpoints ROOT OUT SEED RESULT``: one random-weight checkpoint per pinned generator, built by
dp2's own ``load_config`` + ``instantiate`` from its configs in the checkout ROOT and saved as
dp2's loader reads it (``load_generator_state``): the generator's weights under
``EMA_generator``, w cluster centres (top level for the faces, ``style_net.w_centers`` in the
state for TriA-GAN: both places dp2 reads), TriA-GAN's ``to_rgb`` under the name its
``ckpt_mapper`` maps. RESULT gets {name: {path, md5, parameters}}.

``loaded JOB RESULT``: the generators of JOB's settings loaded by ``load_generators`` from JOB's
checkpoints (rule anonymize_shard_realistic's loader); RESULT gets the tensors of each that are not
its checkpoint's, and dp2's warnings and output while loading.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import torch

from anonymization_impact.io import file_digest, write_json_atomic
from anonymization_impact.realistic.deepprivacy2 import GENERATORS
from anonymization_impact.realistic.loading import load_generators

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


def loaded(job: dict) -> dict:
    """dp2's loader on each checkpoint (load_generators, as prepare_generators calls it): the tensors
    that do not come from the file, and what dp2 warned while loading."""
    captured = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        warnings.simplefilter("always")
        generators = load_generators(job["settings"], job["weights"], "cpu", job["dp2_root"])
    differing = {role: weights_that_differ(generators[size], job["weights"][role]) for role, size in zip(job["settings"]["roles"], generators)}
    return {"differing": differing, "warnings": [str(w.message) for w in caught], "output": captured.getvalue(),
            "parameters": {role: sum(p.numel() for p in generators[size].module.parameters()) for role, size in zip(job["settings"]["roles"], generators)}}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "checkpoints":
        result = checkpoints(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        result = loaded(json.loads(Path(sys.argv[2]).read_text()))
    write_json_atomic(Path(sys.argv[-1]), result)
