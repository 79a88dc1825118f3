"""Privacy audit of one anonymized tree: what was anonymized, what was not and why."""

from __future__ import annotations

from collections import Counter

from .variants import Variant

STATEMENTS = {
    "maskout": "Regions are replaced by a constant; the output does not depend on the original pixels inside them (leak-checked).",
    "blur": "Regions are obfuscated by a Gaussian blur, not removed: the blurred pixels are a function of the original ones, and blurred faces can be re-identified.",
    "realistic": "Regions are replaced by synthesized content; the generator never sees the original pixels inside them (leak-checked).",
    "realistic-histogram": "Regions are replaced by synthesized content; the generator never sees the original pixels inside them, "
                           "but the synthesized person is adjusted to the colour histogram of the original crop, region included "
                           "(HM / HM-LO, paper Sec. 3.4), so colour statistics of the original person carry over.",
}


ANONYMIZED_METADATA = "encoded from pixels only (no EXIF, GPS, thumbnails, ICC profiles or comments)"
UNTOUCHED_PLACED = {"strip": "copied with their metadata removed, pixels as they were", "symlink": "symlinks to the raw files",
                    "copy": "the raw files copied byte for byte"}


def metadata_audit(tree: dict) -> dict:
    """What metadata the tree's images carry, from ``trees.assemble_tree``'s counts: the untouched
    images' raw metadata is kept unless they were stripped."""
    mode, untouched = tree["untouched_images"], tree["untouched"]
    audit = {"anonymized_images": ANONYMIZED_METADATA, "untouched_images": mode, "raw_metadata_kept": mode != "strip" and untouched > 0}
    if mode == "strip":
        removed = tree["metadata_removed"]
        kinds = ", ".join(f"{kind} {count}" for kind, count in removed["files_by_kind"].items())
        audit.update(removed)
        audit["statement"] = (f"Untouched images: {untouched} copies with their metadata removed losslessly (nothing re-encoded); "
                              f"{removed['files']} carried some" + (f" (files with {kinds})" if kinds else "")
                              + (f"; {removed['orientation_kept']} keep their EXIF orientation as the only tag" if removed["orientation_kept"] else "") + ".")
    elif untouched:
        audit["statement"] = (f"RAW METADATA KEPT: the {untouched} untouched images are {UNTOUCHED_PLACED[mode]}, with whatever EXIF, GPS, "
                              "thumbnails, ICC profiles and comments they carry (anonymization.untouched_images: "
                              f"{mode}, for training only); set it to strip before releasing this tree.")
    else:
        audit["statement"] = "Every training image was anonymized: no raw file is in the tree."
    return audit


def _statement(variant: Variant) -> str:
    if variant.uses_original_colours:
        return STATEMENTS["realistic-histogram"]
    return STATEMENTS[variant.settings["method"]]


def _generator_summary(shard_audits: list[dict]) -> dict | None:
    """Which generator made the pixels, how many crops it synthesized (an HR face twice) and, for
    HM-LO, how the optimization went."""
    summaries = [audit["method"] for audit in shard_audits if "method" in audit]
    if not summaries:
        return None
    summary = {"generator": sorted({s["generator"] for s in summaries}), "syntheses": sum(s["syntheses"] for s in summaries),
               "truncation": summaries[0]["truncation"], "postprocess": summaries[0]["postprocess"]}
    optimized = [s for s in summaries if "hmlo" in s]
    if optimized:  # bodies only: one synthesis per person
        instances = sum(s["syntheses"] for s in optimized)
        summary["hmlo"] = {"below_threshold": sum(s["hmlo"]["below_threshold"] for s in optimized), "instances": instances,
                           "max_steps": max(s["hmlo"]["max_steps"] for s in optimized),
                           "mean_steps": sum(s["hmlo"]["mean_steps"] * s["syntheses"] for s in optimized) / instances}
    return summary


NOTHING_CHECKED = "no image was re-anonymized (anonymization.leak_check_images is 0, or no image had a region)"


def leak_check_summary(leak_checks: list[dict]) -> dict:
    """The shards' leak checks in one: passed (True / False) only where the check applies and images
    were checked; otherwise ``passed`` is None and the reason is given (never "passed" unchecked)."""
    applies = any(check["applies"] for check in leak_checks)
    checked = [check for check in leak_checks if check["applies"] and check["images_checked"]]
    summary = {"applies": applies, "images_checked": sum(len(check["images_checked"]) for check in leak_checks),
               "passed": all(check["passed"] for check in checked) if checked else None}
    if applies and not checked:
        summary["not_checked_because"] = NOTHING_CHECKED
    if not applies:
        reasons = sorted({check["not_applicable_because"] for check in leak_checks if "not_applicable_because" in check})
        summary["not_applicable_because"] = reasons[0] if reasons else "the method transforms the original pixels"  # shards audited before reasons were recorded
    return summary


def tree_audit(dataset: str, variant_name: str, variant: dict, shard_audits: list[dict], excluded: dict, faces: dict | None,
               tree: dict | None = None) -> dict:
    """The audit of one tree; ``tree``: ``trees.assemble_tree``'s counts (how the untouched images were placed)."""
    images = [record for audit in shard_audits for record in audit["images"]]
    anonymized = sum(len(record["anonymized"]) for record in images)  # each face once, HR faces too
    refined = sum(len(record.get("refined_at_256", [])) for record in images)
    not_anonymized = Counter(excluded["counts"]["excluded_by_reason"])
    not_anonymized.update(item["reason"] for record in images for item in record["skipped"])
    leak_checks = [audit["leak_check"] for audit in shard_audits]
    audit = {
        "dataset": dataset,
        "variant": variant_name,
        "variant_config": variant,
        "region": variant["region"],
        "method": variant["method"],
        "statement": _statement(Variant(variant_name, variant)),
        "images": {
            "total": len(images),
            "anonymized": sum(1 for record in images if record["anonymized"]),
            "unchanged": sum(1 for record in images if not record["anonymized"]),
            "exif_oriented": sum(audit["exif_oriented_images"] for audit in shard_audits),
        },
        "instances": {
            "unit": "faces" if variant["region"] == "face" else "persons",
            "anonymized": anonymized,
            "not_anonymized_by_reason": dict(sorted(not_anonymized.items())),
        },
        "leak_check": leak_check_summary(leak_checks),
        "shards": len(shard_audits),
        "per_image": sorted(images, key=lambda record: record["image"]),
    }
    if refined:
        audit["instances"]["refined_at_256"] = refined
    generator = _generator_summary(shard_audits)
    if generator is not None:
        audit["generator"] = generator
    if faces is not None:
        audit["face_detection"] = {key: faces[key] for key in ("confidence", "min_match_iou", "counts")}
    if tree is not None:
        audit["tree"] = tree
        audit["metadata"] = metadata_audit(tree)
    return audit


def audit_markdown(audit: dict) -> str:
    instances, images, leak = audit["instances"], audit["images"], audit["leak_check"]
    lines = [
        f"# Privacy audit: {audit['dataset']} / {audit['variant']}",
        "",
        f"- Region: {audit['region']}; method: {audit['method']}. {audit['statement']}",
        f"- Images: {images['total']} in the training split, {images['anonymized']} changed, {images['unchanged']} unchanged"
        + (f" ({UNTOUCHED_PLACED[audit['metadata']['untouched_images']]})." if "metadata" in audit else "."),
        f"- {instances['unit'].capitalize()} anonymized: {instances['anonymized']}"
        + (f" ({instances['refined_at_256']} of them refined at 256x256 in a second pass)." if instances.get("refined_at_256") else "."),
        "- Not anonymized:" if instances["not_anonymized_by_reason"] else "- Not anonymized: none.",
    ]
    lines += [f"  - {count} × {reason}" for reason, count in instances["not_anonymized_by_reason"].items()]
    if "generator" in audit:
        generator = audit["generator"]
        lines.append(f"- Generator: {'; '.join(generator['generator'])}; truncation {generator['truncation']}, post-processing {generator['postprocess']}.")
        if "hmlo" in generator:
            hmlo = generator["hmlo"]
            lines.append(f"- HM-LO: {hmlo['below_threshold']} of {hmlo['instances']} persons reached the loss threshold; "
                         f"{hmlo['mean_steps']:.1f} Adam steps on average, at most {hmlo['max_steps']}.")
    clipped = audit.get("face_detection", {}).get("counts", {}).get("clipped_to_image")
    if clipped is not None:
        farthest = audit["face_detection"]["counts"]["clipped_max_outside_px"]
        lines.append(f"- Face boxes clipped to the image border: {clipped}" + (f" (the farthest reached {farthest:g} px outside)." if clipped else "."))
    if leak["applies"] and leak["passed"] is None:
        lines.append(f"- Leak check: applies, but not run: {leak['not_checked_because']}.")
    elif leak["applies"]:
        lines.append(f"- Leak check: {leak['images_checked']} images re-anonymized with the region pixels replaced by noise; output identical: {'yes' if leak['passed'] else 'NO'}.")
    else:
        lines.append(f"- Leak check: not applicable: {leak['not_applicable_because']}.")
    lines.append(f"- Metadata: anonymized images are {ANONYMIZED_METADATA}." + (f" {audit['metadata']['statement']}" if "metadata" in audit else ""))
    return "\n".join(lines) + "\n"
