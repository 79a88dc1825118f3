"""Fig. 7: cumulative histogram of person box size normalized to image size.

For every anonymization target (``persons.json`` of a split, i.e. after the paper's filters)
with box width w, height h in an image of width W, height H, the plotted size is the
average normalized box side length ``(w / W + h / H) / 2`` (the paper's caption: "average
bounding box length normalized to image size"). The curve at x is the share of boxes whose
size is at most x. The data file also gives the share of boxes that cover less than 1 % of
the image area (``w * h < 0.01 * W * H``), the statistic quoted in the paper's text.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .style import save_figure  # noqa: E402

LABELS = {"coco": "COCO", "cityscapes": "Cityscapes", "bdd100k": "BDD100K"}


def normalized_box_sizes(persons: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per person: (average normalized side length, box area / image area)."""
    sizes = {image["id"]: (image["width"], image["height"]) for image in persons["images"]}
    side, area_share = [], []
    for annotation in persons["annotations"]:
        width, height = sizes[annotation["image_id"]]
        w, h = annotation["bbox"][2:]
        side.append((w / width + h / height) / 2)
        area_share.append(w * h / (width * height))
    return np.asarray(side, dtype=float), np.asarray(area_share, dtype=float)


def cumulative(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the share of values at most each of them."""
    ordered = np.sort(values)
    return ordered, np.arange(1, len(ordered) + 1) / len(ordered)


def summarize(persons_by_dataset: dict[str, dict]) -> dict:
    summary = {}
    for dataset, persons in persons_by_dataset.items():
        side, area_share = normalized_box_sizes(persons)
        summary[dataset] = {
            "boxes": int(len(side)),
            "median_normalized_side": float(np.median(side)) if len(side) else None,
            "share_below_1pct_area": float(np.mean(area_share < 0.01)) if len(side) else None,
            "quantiles_normalized_side": {
                str(q): float(np.quantile(side, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)
            }
            if len(side)
            else {},
        }
    return summary


def plot(persons_by_dataset: dict[str, dict], pdf_path: Path, png_path: Path, synthetic: dict[str, bool]) -> None:
    figure, axes = plt.subplots(figsize=(4.5, 3.2))
    for dataset, persons in persons_by_dataset.items():
        side, _ = normalized_box_sizes(persons)
        x, y = cumulative(side)
        label = LABELS[dataset] + (" (synthetic twin)" if synthetic.get(dataset) else "")
        axes.step(np.concatenate([[0.0], x]), np.concatenate([[0.0], y]), where="post", label=label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("average box side length / image side")
    axes.set_ylabel("cumulative share of persons")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, pdf_path, png_path)
