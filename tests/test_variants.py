"""The Variant type: what a configured variant is, needs and is called, answered in one place."""

from __future__ import annotations

import pytest
import yaml

from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.schema import SCHEMA_PATH, definition_defaults
from anonymization_impact.variants import Variant, runnable_variants, variant_names
from conftest import REPO


@pytest.fixture(scope="module")
def config():
    with open(REPO / "config.yaml") as handle:
        return validate_config(yaml.safe_load(handle))


def test_what_the_paper_variants_need(config):
    def needs(name, dataset):
        variant = Variant.of(config, name)
        return variant.is_realistic, variant.generator_roles, variant.region_inputs(dataset)

    assert needs("original", "coco") == (False, (), ())
    assert needs("face-blur", "cityscapes") == (False, (), ("faces",))
    assert needs("face-realistic", "coco") == (True, ("face",), ("faces",))
    assert needs("face-realistic-hrfaces", "coco") == (True, ("face", "face_hr"), ("faces",))
    assert needs("body-maskout", "bdd100k") == (False, (), ())
    # realistic bodies are conditioned on keypoints: COCO's annotations have them, the others are estimated
    assert needs("body-realistic", "coco") == (True, ("body",), ())
    assert needs("body-realistic", "cityscapes") == (True, ("body",), ("keypoints",))


def test_truncation_and_colour_statistics(config):
    assert Variant.of(config, "face-realistic").truncation == "none"  # unset: the paper's default for faces
    assert Variant.of(config, "body-realistic-notrunc").truncation == "none"
    assert Variant.of(config, "body-blur").truncation is None
    assert [Variant.of(config, name).uses_original_colours for name in ("body-realistic", "body-realistic-hm", "body-realistic-hmlo")] == [False, True, True]


def test_runnable_on_a_twin_needs_a_synthetic_generator(config):
    twin = Variant.of(config, "body-realistic")
    assert twin.runnable_on(config, "cityscapes")
    without = {**config, "realistic": {**config["realistic"], "synthetic_generator": None}}
    assert not twin.runnable_on(without, "cityscapes") and Variant.of(without, "body-blur").runnable_on(without, "cityscapes")
    real = {**without, "datasets": {**without["datasets"], "cityscapes": {**without["datasets"]["cityscapes"], "synthetic": False}}}
    assert twin.runnable_on(real, "cityscapes")  # DeepPrivacy2 on the real dataset
    assert runnable_variants(without)("body-realistic") is False and runnable_variants(real)("body-realistic") is False  # bdd100k is still a twin
    assert twin.synthetic_generator(config, "cityscapes").startswith("twin person renderer")
    assert twin.synthetic_generator(real, "cityscapes") is None and twin.generator_suffix(real, "cityscapes") == ""


def test_names(config):
    assert variant_names(config)[0] == "original" and set(variant_names(config)[1:]) == set(config["variants"])
    realistic = set(variant_names(config, realistic=True))
    assert realistic == {name for name, settings in config["variants"].items() if settings["method"] == "realistic"}
    assert realistic.isdisjoint(variant_names(config, realistic=False))
    with pytest.raises(WorkflowInputError, match="unknown variant 'face-pixelate'"):
        Variant.of(config, "face-pixelate")


def test_label_defaults_are_the_schemas(tmp_path, monkeypatch):
    """A changed schema default changes which options a label names: nothing is re-typed."""
    assert definition_defaults("variant")["min_size"] == 8 and definition_defaults("variant")["blur_sigma"] == 7
    settings = validate_config({"variants": {"v": {"region": "body", "method": "blur", "min_size": 32}}})["variants"]["v"]
    assert Variant("v", settings).figure_label() == "Body blur (min size 32²)"
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["$defs"]["variant"]["properties"]["min_size"]["default"] = 32
    moved = tmp_path / "schema.yaml"
    moved.write_text(yaml.safe_dump(schema))
    from anonymization_impact import schema as schema_module

    monkeypatch.setattr(schema_module, "SCHEMA_PATH", moved)
    monkeypatch.setattr(schema_module.load_schema, "__defaults__", (moved,))
    definition_defaults.cache_clear()
    try:
        assert Variant("v", settings).figure_label() == "Body blur"
    finally:
        definition_defaults.cache_clear()
