"""The truth manifest of a twin: one record per rendered instance, the counts per split, and the
check that every split has the special cases every twin promises."""

from __future__ import annotations

from .rendering import Visible

HUMAN_KINDS = ("person", "rider")


def instance_truth(vis: Visible, category: str, *, iscrowd: bool, ignore: bool, num_keypoints: int | None) -> dict:
    human = vis.obj.kind in HUMAN_KINDS
    return {
        "category": category,
        "iscrowd": bool(iscrowd),
        "ignore": bool(ignore),
        "bbox": [int(v) for v in vis.bbox],
        "area": int(vis.area),
        "front_facing": bool(vis.obj.person.front) if human else None,
        "face_box": vis.face_box if human else None,
        "num_keypoints": num_keypoints,
        "touches_border": bool(vis.touches_border),
        "keypoints": [int(v) for v in vis.keypoints] if human and vis.keypoints is not None else None,
    }


def split_counts(images: list[dict], person: str, keypoints: bool) -> dict:
    per_cat: dict[str, dict[str, int]] = {}
    eligible = touching = small = faces = no_person = only_crowd = 0
    for image in images:
        persons = [i for i in image["instances"] if i["category"] == person]
        if not persons:
            no_person += 1
        elif all(i["iscrowd"] for i in persons):
            only_crowd += 1
        for inst in image["instances"]:
            c = per_cat.setdefault(inst["category"], {"total": 0, "crowd": 0, "ignore": 0})
            c["total"] += 1
            c["crowd"] += int(inst["iscrowd"])
            c["ignore"] += int(inst["ignore"])
            if inst["face_box"] is not None:
                faces += 1
        for inst in persons:
            if is_eligible(inst, keypoints):
                eligible += 1
                touching += int(inst["touches_border"])
                small += int(inst["bbox"][2] * inst["bbox"][3] < 32 * 32)
    return {
        "images": len(images),
        "images_without_persons": no_person,
        "images_only_crowd_persons": only_crowd,
        "instances": {k: per_cat[k] for k in sorted(per_cat)},
        "persons_eligible": eligible,
        "persons_touching_border": touching,
        "persons_below_32sq": small,
        "faces_visible": faces,
    }


def is_eligible(inst: dict, keypoints: bool) -> bool:
    return not inst["iscrowd"] and not inst["ignore"] and (not keypoints or (inst["num_keypoints"] or 0) >= 1)


def check_requirements(dataset: str, split: str, images: list[dict], person: str) -> None:
    """Raise if a split lacks one of the special cases every twin promises."""
    keypoints = dataset == "coco"
    counts = split_counts(images, person, keypoints)
    insts = [(img, i) for img in images for i in img["instances"]]
    elig = [(img, i) for img, i in insts if i["category"] == person and is_eligible(i, keypoints)]
    humans = [i for _, i in insts if i["front_facing"] is not None]
    problems = []
    if counts["images_without_persons"] < 1:
        problems.append("an image without persons")
    if counts["images_only_crowd_persons"] < 1:
        problems.append("an image with only crowd persons")
    if counts["persons_touching_border"] < 1:
        problems.append("an eligible person touching the border")
    if counts["persons_below_32sq"] < 2:
        problems.append("two eligible persons below 32x32")
    if not any(i["bbox"][3] * 3 >= img["height"] for img, i in elig):
        problems.append("an eligible person at least a third of the image height")
    if not any(i["front_facing"] for i in humans) or not any(i["front_facing"] is False for i in humans):
        problems.append("front- and back-facing persons")
    if dataset == "coco":
        if not any(i["category"] == person and not i["iscrowd"] and i["num_keypoints"] == 0 for _, i in insts):
            problems.append("a non-crowd person with num_keypoints 0")
    else:
        if not any(i["category"] == "rider" for _, i in insts):
            problems.append("a rider")
    if dataset == "bdd100k" and not any(i["category"] == person and i["ignore"] for _, i in insts):
        problems.append("an ignore pedestrian")
    if problems:
        raise RuntimeError(f"{dataset} twin, {split} split lacks: {', '.join(problems)} (generator bug)")
