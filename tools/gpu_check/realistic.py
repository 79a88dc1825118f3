"""Section realistic: anonymize_shard_realistic's calls (twin person renderer, multi-modal truncation
and HM-LO) on a few training images, on the CPU and CUDA; the outputs checked, compared and shown."""

from __future__ import annotations

import copy
import logging
import sys
import time
import traceback
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import VARIANTS
from .check import Check

if TYPE_CHECKING:
    from anonymization_impact.variants import Variant


class Sample(NamedTuple):
    """The training images anonymized: (image, targets) pairs, their persons document, pixels and regions."""

    chosen: list
    persons: dict  # the persons document of the chosen images only
    n_persons: int
    originals: dict  # file name -> original pixels
    unions: dict  # file name -> boolean mask of its regions


def choose_sample(check: Check) -> Sample:
    """The first --images training images (in shard order) with at least two body targets."""
    from anonymization_impact.io import decode_image, read_json
    from anonymization_impact.keypoints import apply_keypoints
    from anonymization_impact.trees import name_hash, plan_targets, region_union

    persons = read_json(check.inputs / "annotations" / "train" / "persons.json")
    apply_keypoints(persons, read_json(check.inputs / "keypoints-twin.json"))
    by_image: dict = {}
    for annotation in persons["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    body = check.settings["variants"][VARIANTS[0]]
    chosen = []
    for image in sorted(persons["images"], key=lambda i: name_hash(i["file_name"])):
        targets, _ = plan_targets("body", image, by_image.get(image["id"], []), None, body["min_size"], False)
        if len(targets) >= 2:
            chosen.append((image, targets))
        if len(chosen) == check.args.images:
            break
    ids = {image["id"] for image, _ in chosen}
    subset = {**persons, "images": [i for i in persons["images"] if i["id"] in ids], "annotations": [a for a in persons["annotations"] if a["image_id"] in ids]}
    originals = {image["file_name"]: decode_image(check.inputs / "cityscapes" / image["file_name"])[0] for image, _ in chosen}
    unions = {image["file_name"]: region_union(targets, image["height"], image["width"]) for image, targets in chosen}
    return Sample(chosen, subset, sum(len(t) for _, t in chosen), originals, unions)


def realistic(check: Check) -> dict:
    import torch

    from anonymization_impact.variants import Variant

    torch.use_deterministic_algorithms(False)  # anonymize_shard runs in a process of its own in the workflow
    sample = choose_sample(check)
    devices = ["cpu", "cuda"] if check.cuda else ["cpu"]
    torch_device = {"cpu": "cpu", "cuda": check.gpu}
    configured = check.settings["realistic"]
    outputs, report = {}, {"images": len(sample.chosen), "persons": sample.n_persons, "cpu_threads": check.args.cpu_threads,
                           "generator": configured["synthetic_generator"], "config_realistic_device": configured["device"]}
    problems = []
    for name in VARIANTS:
        options = copy.deepcopy(check.settings["variants"][name])
        if check.args.hmlo_steps is not None:
            options["hmlo_steps"] = check.args.hmlo_steps
        variant = Variant(name, options)
        for device in devices:
            try:  # one failing (variant, device) must not hide the others
                entry, outputs[(name, device)] = anonymize(check, variant, device, torch_device[device], sample)
            except Exception as error:  # noqa: BLE001
                problems.append(f"{name} on {device}: {type(error).__name__}: {error}")
                entry = {"error": problems[-1][:2000], "traceback": traceback.format_exc()[-3000:]}
                print(entry["traceback"], file=sys.stderr, flush=True)
            report[f"{name}/{device}"] = entry
            check.report.emit("realistic", variant=name, device=device, **{k: v for k, v in entry.items() if k not in ("audit_method", "traceback")})
    if check.cuda:
        for name in VARIANTS:
            if (name, "cpu") not in outputs or (name, "cuda") not in outputs:
                continue
            differences = []
            for file_name, cpu_pixels in outputs[(name, "cpu")].items():
                gpu_pixels = outputs[(name, "cuda")][file_name]
                delta = np.abs(cpu_pixels.astype(np.int16) - gpu_pixels.astype(np.int16))
                union = sample.unions[file_name]
                differences.append((float(delta.mean()), float(delta[union].mean()), int(delta.max()), float(np.any(delta > 0, axis=-1).mean())))
            d = np.array(differences)
            report[f"{name}/cuda_vs_cpu"] = {"mean_abs_diff_all_pixels": float(d[:, 0].mean()), "mean_abs_diff_region_pixels": float(d[:, 1].mean()),
                                             "max_abs_diff": int(d[:, 2].max()), "fraction_pixels_differing": float(d[:, 3].mean())}
    try:
        montage(check, sample.chosen[:3], sample.originals, outputs, devices)
    except Exception as error:  # noqa: BLE001
        problems.append(f"montage: {type(error).__name__}: {error}")
    if problems:
        check.report.emit("realistic_partial_report", **{k: v for k, v in report.items()})
        raise RuntimeError("; ".join(problems))
    return report


def anonymize(check: Check, variant: Variant, device: str, torch_device: str, sample: Sample) -> tuple[dict, dict]:
    """anonymize_shard_realistic's calls (prepare_generators, build_realistic, anonymize_shard)
    on the sample, every synthesis timed; the output images checked."""
    import torch

    from anonymization_impact.io import decode_image
    from anonymization_impact.realistic.loading import prepare_generators
    from anonymization_impact.realistic.method import build_realistic
    from anonymization_impact.trees import anonymize_shard

    anonymization = check.settings["anonymization"]
    torch.set_num_threads(check.args.cpu_threads)
    settings = {**check.settings["generators"][variant.name], "device": torch_device}
    started = time.perf_counter()
    generators, resolved = prepare_generators(settings, {}, None, sample.n_persons, logging.getLogger("gpu_check.realistic"))
    loaded = time.perf_counter() - started
    method = build_realistic(variant.settings, generators, resolved)
    timings, finite = [], []
    synthesize = method.synthesize

    def timed(*args, **kwargs):
        begin = time.perf_counter()
        pixels = synthesize(*args, **kwargs)
        timings.append(time.perf_counter() - begin)
        finite.append(bool(np.all(np.isfinite(pixels))) and float(pixels.min()) >= 0 and float(pixels.max()) <= 255)
        return pixels

    method.synthesize = timed
    directory = check.work / "realistic" / variant.name / device
    check.report.say(f"{variant.name} on {device}: {len(sample.chosen)} images, {sample.n_persons} persons")
    started = time.perf_counter()
    audit = anonymize_shard(root=check.inputs / "cityscapes", persons=sample.persons, faces=None, variant=variant.settings, method=method, shard=0, shards=1,
                            output_dir=directory, leak_check_images=anonymization["leak_check_images"],
                            hide_pending=anonymization["pending_regions"] == "hidden")
    seconds = time.perf_counter() - started
    images, outside_changed, inside_changed = {}, 0, []
    for image, _ in sample.chosen:
        pixels = decode_image(directory / image["file_name"])[0]
        original, union = sample.originals[image["file_name"]], sample.unions[image["file_name"]]
        assert pixels.dtype == np.uint8 and pixels.shape == original.shape, (pixels.dtype, pixels.shape)
        outside_changed += int(np.any(pixels != original, axis=-1)[~union].sum())
        inside_changed.append(float(np.any(pixels != original, axis=-1)[union].mean()))
        images[image["file_name"]] = pixels
    entry = {"resolved_device": resolved, "truncation": variant.truncation, "postprocess": variant.settings["postprocess"],
             "hmlo_steps_max": variant.settings["hmlo_steps"], "generator_load_s": round(loaded, 2), "shard_s": round(seconds, 2),
             "syntheses": len(timings), "s_per_person_mean": float(np.mean(timings)), "s_per_person_median": float(np.median(timings)),
             "s_first_person": float(timings[0]) if timings else None, "all_finite_in_0_255": all(finite),
             "pixels_changed_outside_regions": outside_changed, "region_fraction_changed_mean": float(np.mean(inside_changed)),
             "leak_check": audit["leak_check"], "audit_method": audit.get("method")}
    if not all(finite) or outside_changed:
        raise AssertionError(f"non-finite / out-of-range pixels ({not all(finite)}) or {outside_changed} pixels changed outside the regions")
    if device == "cuda" and torch_device == "cuda" and resolved != "cuda":
        raise AssertionError(f"realistic.device cuda resolved to {resolved}")
    return entry, images


def montage(check: Check, chosen, originals, outputs, devices) -> None:
    """realistic_montage.png: originals, each (variant, device) output and the |CPU - CUDA| difference, one row each."""
    from PIL import Image, ImageDraw

    rows = [("original", lambda f: originals[f])]
    for name in VARIANTS:
        for device in devices:
            if (name, device) in outputs:  # a failed combination has no row
                rows.append((f"{name} {device}", lambda f, key=(name, device): outputs[key][f]))
        if (name, "cpu") in outputs and (name, "cuda") in outputs:
            rows.append((f"{name} |cpu-cuda| x8", lambda f, n=name: amplified_difference(outputs[(n, "cpu")][f], outputs[(n, "cuda")][f])))
    files = [image["file_name"] for image, _ in chosen]
    height, width = originals[files[0]].shape[:2]
    label = 14
    canvas = Image.new("RGB", (width * len(files), (height + label) * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (title, get) in enumerate(rows):
        draw.text((2, r * (height + label) + 1), title, fill=(0, 0, 0))
        for c, file_name in enumerate(files):
            canvas.paste(Image.fromarray(get(file_name)), (c * width, r * (height + label) + label))
    canvas.save(check.out / "realistic_montage.png")
    check.files.append("realistic_montage.png")


def amplified_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """|first - second| x 8, so that a difference of one level shows."""
    return np.clip(np.abs(first.astype(np.int16) - second.astype(np.int16)) * 8, 0, 255).astype(np.uint8)
