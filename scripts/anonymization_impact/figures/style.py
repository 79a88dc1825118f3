"""What the figures share: human-readable names of variants and backbones, reproducible saving."""

from __future__ import annotations

from ..tables import METHOD_NAMES, names_its_truncation, variant_qualifiers

ORIGINAL = "original"


def variant_label(name: str, settings: dict | None) -> str:
    """E.g. "Face blur", "Body realistic + HM-LO", "Body realistic (no truncation)": the region,
    then the tables' qualifiers of the (validated) variant; its own name when it has no settings."""
    if name == ORIGINAL:
        return "Original"
    if not settings:
        return name
    plus, details = variant_qualifiers(settings, show_truncation=names_its_truncation(settings))
    label = " + ".join([f"{settings['region'].capitalize()} {METHOD_NAMES[settings['method']].lower()}", *plus])
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
