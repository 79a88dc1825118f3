"""What the figures share: human-readable names of variants and backbones, reproducible saving."""

from __future__ import annotations

from ..realistic import DEFAULT_TRUNCATION

ORIGINAL = "original"
METHODS = {"blur": "blur", "maskout": "mask-out", "realistic": "realistic"}
TRUNCATION = {"none": "no truncation", "unimodal": "unimodal truncation", "multimodal": "multimodal truncation"}
POSTPROCESS = {"hm": "+ HM", "hmlo": "+ HM-LO"}
# schema defaults: a setting equal to these needs no mention
DEFAULTS = {"blur_sigma": 7, "blur_kernel": 21, "blur_space": "crop", "maskout_value": 127, "min_size": 8, "seed": 0}


def variant_label(name: str, settings: dict | None) -> str:
    """E.g. "Face blur", "Body realistic + HM-LO", "Body realistic (no truncation)";
    the variant's own name when it has no settings (not in ``variants``)."""
    if name == ORIGINAL:
        return "Original"
    if not settings:
        return name
    label = f"{settings['region'].capitalize()} {METHODS[settings['method']]}"
    if settings.get("hr_faces"):
        label += " + HR faces"
    label += " " + POSTPROCESS[settings["postprocess"]] if settings.get("postprocess") in POSTPROCESS else ""
    details = []
    truncation = settings.get("truncation")
    if settings["method"] == "realistic" and truncation and truncation != DEFAULT_TRUNCATION[settings["region"]]:
        details.append(TRUNCATION[truncation])
    if settings["method"] == "blur":
        for key, text in (("blur_sigma", "sigma {}"), ("blur_kernel", "kernel {}"), ("blur_space", "{} space")):
            if settings.get(key, DEFAULTS[key]) != DEFAULTS[key]:
                details.append(text.format(settings[key]))
    if settings["method"] == "maskout" and settings.get("maskout_value", 127) != 127:
        details.append(f"value {settings['maskout_value']}")
    if settings.get("min_size", 8) != 8:
        details.append(f"persons < {settings['min_size']}x{settings['min_size']} kept")
    if settings.get("seed", 0) != 0:
        details.append(f"seed {settings['seed']}")
    return label + (f" ({', '.join(details)})" if details else "")


def backbone_label(backbone: str | None) -> str:
    """resnet152 -> ResNet-152."""
    if not backbone:
        return "unknown backbone"
    return f"ResNet-{backbone[len('resnet'):]}" if backbone.startswith("resnet") else backbone


def save_figure(figure, pdf_path, png_path) -> None:
    """PDF and PNG (200 dpi) without creation dates or software tags, so that the same data
    gives the same bytes; closes the figure."""
    import matplotlib.pyplot as plt

    figure.savefig(pdf_path, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    figure.savefig(png_path, dpi=200, metadata={"Software": None})
    plt.close(figure)
