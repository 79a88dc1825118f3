"""Anonymization variants (config key ``variants``): what each one is, needs and is called.

Every caller asks a :class:`Variant`: the DAG (the regions and generators a variant needs, and
whether it can run on a dataset), the shard script, the audit, the tables and the figures. The
defaults its labels compare against are the schema's (``$defs.variant``), never re-typed here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from . import KEYPOINT_ANNOTATED_DATASETS
from .errors import WorkflowInputError
from .realistic import DEFAULT_TRUNCATION, SYNTHETIC_GENERATORS, effective_truncation
from .schema import definition_defaults

ORIGINAL = "original"
METHOD_NAMES = {"blur": "Blur", "maskout": "Mask-out", "realistic": "Realistic"}
POSTPROCESS_NAMES = {"hm": "HM", "hmlo": "HM-LO"}
TRUNCATION_NAMES = {"none": "no truncation", "unimodal": "unimodal truncation", "multimodal": "multi-modal truncation"}
GROUP_NAMES = {"original": "", "face": "Face", "body": "Body"}


@dataclass(frozen=True)
class Variant:
    """One named variant with its validated options (``settings``; empty for "original")."""

    name: str
    settings: dict = field(default_factory=dict)

    @classmethod
    def of(cls, config: dict, name: str) -> "Variant":
        if name == ORIGINAL:
            return cls(ORIGINAL)
        try:
            return cls(name, config["variants"][name])
        except KeyError:
            raise WorkflowInputError(f"unknown variant {name!r}: neither 'original' nor an entry of config key 'variants'") from None

    # ----------------------------------------------------------------------------- what it is

    @property
    def is_original(self) -> bool:
        return self.name == ORIGINAL

    @property
    def group(self) -> str:
        """'original', 'face' or 'body': the tables' row group."""
        return ORIGINAL if self.is_original else self.settings["region"]

    @property
    def is_realistic(self) -> bool:
        """Made by generators (DeepPrivacy2, or a synthetic generator on a twin)."""
        return not self.is_original and self.settings["method"] == "realistic"

    @property
    def truncation(self) -> str | None:
        """The latent sampling a realistic variant uses (its region's paper default when unset)."""
        return effective_truncation(self.settings) if self.is_realistic else None

    @property
    def uses_original_colours(self) -> bool:
        """HM / HM-LO adjust the synthesized person to the colour histogram of the original crop."""
        return self.is_realistic and self.settings["postprocess"] != "none"

    # ----------------------------------------------------------------------------- what it needs

    @property
    def generator_roles(self) -> tuple[str, ...]:
        """The generators of a realistic variant (keys of ``realistic.weights``)."""
        if not self.is_realistic:
            return ()
        if self.settings["region"] == "body":
            return ("body",)
        return ("face", "face_hr") if self.settings["hr_faces"] else ("face",)

    def region_inputs(self, dataset: str) -> tuple[str, ...]:
        """The region files its tree reads on ``dataset``: matched face boxes for faces, and
        for realistic bodies keypoints where the dataset's annotations have none."""
        if self.is_original:
            return ()
        if self.settings["region"] == "face":
            return ("faces",)
        if self.is_realistic and dataset not in KEYPOINT_ANNOTATED_DATASETS:
            return ("keypoints",)
        return ()

    def runnable_on(self, config: dict, dataset: str) -> bool:
        """Whether its anonymized data can be made for ``dataset``: realistic variants need
        DeepPrivacy2 (a real dataset) or a synthetic generator (a twin)."""
        if not self.is_realistic or not config["datasets"][dataset]["synthetic"]:
            return True
        return config["realistic"]["synthetic_generator"] is not None

    def synthetic_generator(self, config: dict, dataset: str) -> str | None:
        """The label of what made its pixels on a synthetic twin, or None: not realistic, a
        real dataset (DeepPrivacy2), or no synthetic generator configured."""
        kind = config["realistic"]["synthetic_generator"]
        if not self.is_realistic or not config["datasets"][dataset]["synthetic"] or kind is None:
            return None
        return SYNTHETIC_GENERATORS[kind]

    def generator_suffix(self, config: dict, dataset: str) -> str:
        """" (twin person renderer)" for pixels made by a synthetic generator, else ""."""
        label = self.synthetic_generator(config, dataset)
        return f" ({label.split(' (')[0]})" if label else ""

    # ----------------------------------------------------------------------------- what it is called

    @property
    def names_its_truncation(self) -> bool:
        """A realistic variant whose truncation is not the paper's default for its region."""
        return self.is_realistic and self.truncation != DEFAULT_TRUNCATION[self.settings["region"]]

    def qualifiers(self, show_truncation: bool) -> tuple[list[str], list[str]]:
        """(' + X' parts, ', Y' parts) that tell it from its plain method: the options that
        differ from the schema's defaults, and the post-processing / HR faces / truncation."""
        settings, defaults = self.settings, definition_defaults("variant")
        plus, comma = [], []
        if self.is_realistic:
            if settings["postprocess"] != "none":
                plus.append(POSTPROCESS_NAMES[settings["postprocess"]])
            if settings["hr_faces"]:
                plus.append("HR faces")
            if show_truncation:
                comma.append(TRUNCATION_NAMES[self.truncation])
        if settings["method"] == "blur":
            if settings["blur_sigma"] != defaults["blur_sigma"]:
                comma.append(f"σ = {settings['blur_sigma']:g}")
            if settings["blur_kernel"] != defaults["blur_kernel"]:
                comma.append(f"kernel {settings['blur_kernel']}")
            if settings["blur_space"] != defaults["blur_space"]:
                comma.append(f"blurred in {settings['blur_space']} space")
        if settings["method"] == "maskout" and settings["maskout_value"] != defaults["maskout_value"]:
            comma.append(f"value {settings['maskout_value']}")
        if settings["min_size"] != defaults["min_size"]:
            comma.append(f"min size {settings['min_size']}²")
        if settings["seed"] != defaults["seed"]:
            comma.append(f"seed {settings['seed']}")
        return plus, comma

    def figure_label(self) -> str:
        """E.g. "Face blur", "Body realistic + HM-LO", "Body realistic (no truncation)"; its own
        name when it has no settings (a variant the config does not define)."""
        if self.is_original:
            return "Original"
        if not self.settings:
            return self.name
        plus, details = self.qualifiers(show_truncation=self.names_its_truncation)
        label = " + ".join([f"{self.settings['region'].capitalize()} {METHOD_NAMES[self.settings['method']].lower()}", *plus])
        return label + (f" ({', '.join(details)})" if details else "")


def table_labels(config: dict, names: list[str]) -> dict[str, str]:
    """Row names of one table (Original, Blur, Realistic + HM, Realistic, no truncation, ...) from
    the variants' options, not their names; the truncation is named when it is not the paper's
    default or differs between the realistic rows of one region in this table."""
    variants = {name: Variant.of(config, name) for name in names}
    truncations = {(v.group, v.truncation) for v in variants.values() if v.is_realistic}
    varied = {region for region in ("face", "body") if len({t for (r, t) in truncations if r == region}) > 1}
    labels = {}
    for name, variant in variants.items():
        if variant.is_original:
            labels[name] = "Original"
            continue
        plus, comma = variant.qualifiers(show_truncation=variant.group in varied or variant.names_its_truncation)
        labels[name] = ", ".join([" + ".join([METHOD_NAMES[variant.settings["method"]], *plus]), *comma])
    counts = Counter((variants[name].group, label) for name, label in labels.items())
    for name in names:  # two variants that differ only in options we do not name
        if counts[variants[name].group, labels[name]] > 1:
            labels[name] = f"{labels[name]} ({name})"
    return labels


def row_names(config: dict, names: list[str], dataset: str | None = None) -> dict[str, str]:
    """Labels with their group, for texts without the table's group column: 'Face: Blur'; with
    the dataset, rows made by a synthetic generator say so: 'Body: Realistic (twin person renderer)'."""
    labels = table_labels(config, names)
    rows = {}
    for name in names:
        variant = Variant.of(config, name)
        label = labels[name] if variant.is_original else f"{GROUP_NAMES[variant.group]}: {labels[name]}"
        rows[name] = label + (variant.generator_suffix(config, dataset) if dataset is not None else "")
    return rows


def variant_names(config: dict, realistic: bool | None = None) -> list[str]:
    """"original" and every configured variant; with ``realistic``, only the configured
    variants that are (True) or are not (False) made by generators."""
    if realistic is None:
        return [ORIGINAL, *config["variants"]]
    return [name for name in config["variants"] if Variant.of(config, name).is_realistic == realistic]


def runnable_variants(config: dict):
    """runnable(variant): whether its data can be made on every enabled dataset of ``config``
    (a slice holds only the datasets its results are about)."""
    datasets = [name for name, settings in config["datasets"].items() if settings["enabled"]]
    return lambda name: all(Variant.of(config, name).runnable_on(config, dataset) for dataset in datasets)
