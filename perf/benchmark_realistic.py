"""Cost of realistic anonymization on this machine: seconds per person, and what HM-LO does.

Run: .venv/bin/python perf/benchmark_realistic.py [--images 24]

On the Cityscapes twin (its simulated keypoints), every body of the first ``--images`` training
images is anonymized as the workflow does, with the twin person renderer (the demo's
generator) and the test stand-in: no post-processing, HM, HM-LO (100 steps / loss 0.02). It
prints seconds per person, HM-LO's mean number of Adam steps and how many persons reached the
threshold, and the time of the HM-LO histogram computed from moments against kornia's
pixel-by-bin formula (same numbers). DeepPrivacy2 itself cannot run here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from anonymization_impact.annotations import normalize_split  # noqa: E402
from anonymization_impact.config import validate_config  # noqa: E402
from anonymization_impact.keypoints import apply_keypoints  # noqa: E402
from anonymization_impact.realistic.loading import load_generators  # noqa: E402
from anonymization_impact.realistic.method import build_realistic  # noqa: E402
from anonymization_impact.realistic.postprocess import soft_histogram  # noqa: E402
from anonymization_impact.trees import anonymize_shard  # noqa: E402
from anonymization_impact.twins import write_twin  # noqa: E402
from anonymization_impact.twins.keypoints import simulate_keypoints  # noqa: E402


def kernel_density_per_pixel(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """kornia's ``histogram`` (bandwidth 1): the (pixels x bins) formula the moments replace."""
    centres = torch.linspace(0, 1, bins)
    density = torch.exp(-0.5 * (values.flatten(start_dim=1)[..., None] - centres) ** 2).mean(dim=1)
    return density / (density.sum(dim=-1, keepdim=True) + 1e-10)


def histogram_timing(repeats: int = 5) -> tuple[float, float, float]:
    values = torch.rand(1, 288 * 160, requires_grad=True)
    timings = []
    for function in (kernel_density_per_pixel, soft_histogram):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            (function(values) * torch.arange(256)).sum().backward()
            best = min(best, time.perf_counter() - start)
        timings.append(best)
    with torch.no_grad():
        difference = float((kernel_density_per_pixel(values) - soft_histogram(values)).abs().max())
    return timings[0], timings[1], difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        root = base / "cityscapes"
        write_twin("cityscapes", root, base / "truth.json", base / "faces.json", n_train=args.images, n_val=4, seed=0)
        persons = normalize_split("cityscapes", root, "train")["persons"]
        apply_keypoints(persons, simulate_keypoints("cityscapes", json.loads((base / "truth.json").read_text()), persons, score_threshold=0.3, seed=0))
        print(f"{'generator':<16} {'post-processing':<15} {'persons':>7} {'s/person':>8}  HM-LO")
        for kind in ("twin_renderer", "standin"):
            generators = load_generators({"kind": kind, "roles": ["body"], "standin_seed": 0}, {}, "cpu")
            for postprocess in ("none", "hm", "hmlo"):
                variant = validate_config({"variants": {"v": {"region": "body", "method": "realistic", "postprocess": postprocess}}})["variants"]["v"]
                method = build_realistic(variant, generators)
                start = time.perf_counter()
                audit = anonymize_shard(root=root, persons=persons, faces=None, variant=variant, method=method, shard=0, shards=1,
                                        output_dir=base / f"{kind}-{postprocess}", leak_check_images=0)
                seconds = time.perf_counter() - start
                summary = audit["method"]
                hmlo = summary.get("hmlo")
                note = f"{hmlo['mean_steps']:.1f} steps on average, {hmlo['below_threshold']} below 0.02" if hmlo else ""
                print(f"{kind:<16} {postprocess:<15} {summary['instances']:>7} {seconds / max(summary['instances'], 1):>8.3f}  {note}")
    direct, moments, difference = histogram_timing()
    print(f"HM-LO histogram of a 288x160 crop, forward + backward: pixel x bin formula {direct * 1000:.1f} ms, "
          f"moments {moments * 1000:.1f} ms ({direct / moments:.0f}x), largest difference {difference:.1e}")


if __name__ == "__main__":
    main()
