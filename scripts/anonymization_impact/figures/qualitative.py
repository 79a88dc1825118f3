"""A figure like the paper's Fig. 2: one training image under "original" and every variant.

The image is ``qualitative.images.<dataset>`` or, when that is null, the training image with
the most anonymization targets (persons of ``persons.json``); ties go to the first file name
in sorted order. Each variant's panel is that file read from the variant's anonymized tree
(``root`` next to its ``audit.json``), so it shows exactly what training saw. A variant
without a tree is a grey panel: "needs weights" (realistic anonymization needs the
DeepPrivacy2 generators) or "tree not made". With ``blur_faces`` the original panel has its
matched face boxes blurred with the project's face-blur method (``methods.Blur`` in crop
space, sigma 7, kernel 21, the face crops of the face-* variants), as Cityscapes' terms of use
ask of published images. Nothing is cropped; panels are only downscaled.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..errors import DatasetError, WorkflowInputError  # noqa: E402
from ..io import decode_image, read_json  # noqa: E402
from ..methods import Blur  # noqa: E402
from ..trees import anonymize_pixels, plan_targets, region_union  # noqa: E402
from ..realistic import SYNTHETIC_GENERATORS  # noqa: E402
from .style import ORIGINAL, save_figure, variant_label  # noqa: E402

MAX_PANEL_WIDTH = 480  # pixels; a figure column is 2.4 in at 200 dpi
GREY = 170
COLUMNS = 4
ANONYMIZED, NEEDS_WEIGHTS, NOT_MADE = "anonymized", "needs_weights", "not_made"
STATUS_TEXT = {NEEDS_WEIGHTS: "needs weights", NOT_MADE: "tree not made"}


@dataclass
class Panel:
    variant: str
    label: str
    status: str  # ORIGINAL, ANONYMIZED, NEEDS_WEIGHTS or NOT_MADE
    source: str | None
    pixels: np.ndarray  # downscaled RGB uint8 as drawn
    changed: bool | None = None  # the tree anonymized something in this image (audit)
    faces_blurred: int | None = None  # original panel: face boxes blurred

    def record(self) -> dict:
        return {"variant": self.variant, "label": self.label, "status": self.status, "source": self.source,
                "changed": self.changed, "faces_blurred": self.faces_blurred, "shape": list(self.pixels.shape)}


def choose_image(persons: dict, requested: str | None) -> str:
    """The requested file name (checked), else the one with the most persons (ties: first name)."""
    names = sorted(image["file_name"] for image in persons["images"])
    if requested is not None:
        if requested not in names:
            raise WorkflowInputError(
                f"qualitative image {requested!r} is not an image of the training split (persons.json); "
                f"give a file name as in the annotation JSON, e.g. {names[0]!r}" if names else
                f"qualitative image {requested!r}: the training split has no images"
            )
        return requested
    if not names:
        raise WorkflowInputError("the training split has no images to show")
    ids = {image["id"]: image["file_name"] for image in persons["images"]}
    counts = Counter(ids[annotation["image_id"]] for annotation in persons["annotations"])
    return min(names, key=lambda name: (-counts[name], name))


def blur_faces(pixels: np.ndarray, faces: list[dict], file_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The image with every face box blurred (face-blur's crops and method) and the blurred region."""
    height, width = pixels.shape[:2]
    targets, _ = plan_targets("face", {"height": height, "width": width}, [], faces, min_size=1)
    return anonymize_pixels(pixels, targets, Blur(), 0, file_name), region_union(targets, height, width)


def downscale(pixels: np.ndarray, max_width: int = MAX_PANEL_WIDTH) -> np.ndarray:
    height, width = pixels.shape[:2]
    if width <= max_width:
        return pixels
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _trees_by_variant(trees) -> dict[str, tuple[Path, dict]]:
    """{variant: (tree root, audit)} from audit.json paths (one, a list, or a mapping of them)."""
    paths = trees.values() if isinstance(trees, Mapping) else [trees] if isinstance(trees, (str, Path)) else trees
    found = {}
    for path in paths:
        audit = read_json(path)
        found[audit["variant"]] = (Path(path).parent / "root", audit)
    return found


def _changed(audit: dict, file_name: str) -> bool | None:
    record = next((r for r in audit.get("per_image", []) if r["image"] == file_name), None)
    return None if record is None else bool(record["anonymized"])


def _read(path: Path, expected: tuple[int, int] | None) -> np.ndarray:
    if not path.exists():
        raise DatasetError(f"image {path} does not exist; the anonymized tree or the raw root is incomplete")
    pixels, _, _ = decode_image(path)
    if expected is not None and pixels.shape[:2] != expected:
        raise DatasetError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, the original is {expected[1]}x{expected[0]}")
    return pixels


def build_panels(*, persons: dict, faces: dict | None, trees, raw_root: Path, variants: list[str],
                 variant_settings: dict, image: str | None, blur_original_faces: bool, log=None,
                 max_width: int = MAX_PANEL_WIDTH) -> tuple[str, list[Panel], np.ndarray | None]:
    """(chosen file name, panels in order, blurred region of the original or None)."""
    file_name = choose_image(persons, image)
    dataset = persons.get("info", {}).get("dataset")
    made = _trees_by_variant(trees)
    for name, (_, audit) in made.items():
        if dataset and audit.get("dataset") != dataset:
            raise WorkflowInputError(f"anonymized tree of {name!r} belongs to {audit.get('dataset')!r}, not {dataset!r}")
    original = _read(Path(raw_root) / file_name, None)
    shape = original.shape[:2]
    panels, region = [], None
    order = list(dict.fromkeys([ORIGINAL, *variants]))  # original first, duplicates dropped
    for variant in order:
        label = variant_label(variant, variant_settings.get(variant))
        if variant == ORIGINAL:
            pixels, blurred = original, None
            if blur_original_faces:
                boxes = (faces or {}).get("images", {}).get(file_name, [])
                if not boxes and log:
                    log.info("qualitative: %s has no matched face boxes; the original panel is shown unblurred", file_name)
                pixels, region = blur_faces(original, boxes, file_name)
                blurred, label = len(boxes), label + (" (faces blurred)" if boxes else "")
            panels.append(Panel(variant, label, ORIGINAL, str(Path(raw_root) / file_name), downscale(pixels, max_width), faces_blurred=blurred))
            continue
        if variant not in made:
            needs = (variant_settings.get(variant) or {}).get("method") == "realistic"
            small = downscale(original, max_width).shape
            panels.append(Panel(variant, label, NEEDS_WEIGHTS if needs else NOT_MADE, None, np.full(small, GREY, dtype=np.uint8)))
            continue
        root, audit = made[variant]
        made_by = [name for name in audit.get("generator", {}).get("generator", []) if name in SYNTHETIC_GENERATORS.values()]
        label += "".join(f" ({name.split(' (')[0]})" for name in made_by)  # not DeepPrivacy2: say so
        path = root / file_name
        changed = _changed(audit, file_name)
        if changed is False and log:
            log.info("qualitative: %s leaves %s unchanged (nothing to anonymize there)", variant, file_name)
        panels.append(Panel(variant, label, ANONYMIZED, str(path), downscale(_read(path, shape), max_width), changed=changed))
    return file_name, panels, region


def plot(panels: list[Panel], pdf_path: Path, png_path: Path, title: str | None = None) -> None:
    columns = min(COLUMNS, len(panels))
    grid_rows = math.ceil(len(panels) / columns)
    height, width = panels[0].pixels.shape[:2]
    panel_width = 2.4
    panel_height = panel_width * height / width + 0.3  # room for the label
    figure, axes = plt.subplots(grid_rows, columns, figsize=(panel_width * columns, panel_height * grid_rows + (0.3 if title else 0)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for panel, ax in zip(panels, axes.flat):
        ax.imshow(panel.pixels, interpolation="antialiased")
        ax.set_title("\n".join(textwrap.wrap(panel.label, 34)), fontsize=7)  # long labels stay above their panel
        if panel.status in STATUS_TEXT:
            ax.text(0.5, 0.5, STATUS_TEXT[panel.status], transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.2")
    if title:
        figure.suptitle(title, fontsize=8)
    figure.tight_layout(pad=0.3)
    save_figure(figure, pdf_path, png_path)
