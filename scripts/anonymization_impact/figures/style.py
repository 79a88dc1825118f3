"""What the figures share: human-readable names of variants and backbones, reproducible saving."""

from __future__ import annotations

from ..variants import ORIGINAL, Variant  # noqa: F401 (ORIGINAL: the figures' name of the unmodified data)


def variant_label(name: str, settings: dict | None) -> str:
    """The variant's figure label (``Variant.figure_label``): "Face blur", "Body realistic + HM-LO", …"""
    return Variant(name, settings or {}).figure_label()


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
