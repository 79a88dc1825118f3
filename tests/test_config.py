"""The config schema: defaults, one clear message per error, config.yaml in sync."""

from __future__ import annotations

import pytest
import yaml

from anonymization_impact.config import (
    check_dataset_roots,
    load_config,
    load_schema,
    validate_config,
)
from anonymization_impact.errors import ConfigError, DatasetError

from conftest import REPO


def _walk_properties(schema: dict, path: str = ""):
    """Yield (key path, property schema, required) for every property in the schema."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), sub, name in schema.get("required", [])
        yield from _walk_properties(sub, f"{path}.{name}")
    for name, sub in schema.get("$defs", {}).items():
        yield from _walk_properties(sub, f"$defs.{name}")


def test_every_key_has_a_description_and_every_optional_key_a_default():
    properties = list(_walk_properties(load_schema()))
    assert len(properties) > 30
    for key, sub, required in properties:
        assert sub.get("description"), f"{key} has no description"
        if not required:
            assert "default" in sub, f"{key} has no default"


def test_config_yaml_is_valid_and_names_only_known_variants_and_models():
    config = load_config(REPO / "config.yaml")
    assert config["seeds"] == [0, 1, 2]
    assert set(config["datasets"]) == {"coco", "cityscapes", "bdd100k"}
    table1 = config["experiments"]["table1"]["variants"]
    assert table1[0] == "original" and "body-realistic-hmlo" in table1


def test_config_yaml_keys_are_all_in_the_schema():
    """Everything config.yaml sets is validated; defaults leave it unchanged."""
    with open(REPO / "config.yaml") as handle:
        raw = yaml.safe_load(handle)
    validated = validate_config(raw)

    def contained(small, big, path=""):
        if isinstance(small, dict):
            for key, value in small.items():
                assert key in big, f"{path}.{key} dropped"
                contained(value, big[key], f"{path}.{key}")
        elif isinstance(small, list) and small and isinstance(small[0], dict):
            assert len(small) == len(big), path
            for index, (item, filled) in enumerate(zip(small, big)):
                contained(item, filled, f"{path}[{index}]")
        else:
            assert small == big, path

    contained(raw, validated)


def test_defaults_are_filled_in_for_a_variant():
    config = validate_config({"variants": {"face-blur": {"region": "face", "method": "blur"}}})
    variant = config["variants"]["face-blur"]
    assert (variant["blur_sigma"], variant["blur_kernel"], variant["blur_space"]) == (7, 21, "crop")
    assert variant["maskout_value"] == 127 and variant["min_size"] == 8
    assert config["face_detection"]["confidence"] == {"coco": 0.3, "cityscapes": 0.2, "bdd100k": 0.3}
    assert config["datasets"]["coco"] == {"enabled": True, "synthetic": True, "root": None, "verify_images": True}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"datasets": {"coco": {"rooot": "/data"}}}, "unknown config key 'datasets.coco.rooot'"),
        ({"colour": 1}, "unknown config key 'colour'"),
        ({"variants": {"face-x": {"region": "face", "method": "pixelate"}}}, "'variants.face-x.method': 'pixelate' is not one of"),
        ({"variants": {"face-x": {"region": "face"}}}, "'variants.face-x' is incomplete: 'method' is a required property"),
        ({"seeds": [0, "one"]}, "'seeds[1]': 'one' is not of type 'integer'"),
        ({"synthetic": {"n_train": 2}}, "'synthetic.n_train': 2 is less than the minimum of 8"),
        ({"datasets": {"coco": {"synthetic": "yes"}}}, "'datasets.coco.synthetic': 'yes' is not of type 'boolean'"),
        ({"variants": {"Face_Blur": {"region": "face", "method": "blur"}}}, "invalid name 'Face_Blur' under config key 'variants'"),
        ({"variants": {"original": {"region": "face", "method": "blur"}}}, "invalid name 'original'"),
    ],
)
def test_schema_errors_name_the_key(config, expected):
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_experiment_naming_an_unknown_variant_or_model_is_rejected():
    base = {"models": {"m": {"architecture": "mask_rcnn"}}, "variants": {"face-blur": {"region": "face", "method": "blur"}}}
    with pytest.raises(ConfigError, match=r"'experiments.t.variants\[1\]': 'face-blurr' is neither"):
        validate_config({**base, "experiments": {"t": {"dataset": "coco", "model": "m", "variants": ["original", "face-blurr"]}}})
    with pytest.raises(ConfigError, match=r"'experiments.t.model': 'r50' is not an entry of 'models'"):
        validate_config({**base, "experiments": {"t": {"dataset": "coco", "model": "r50", "variants": ["original"]}}})


def test_report_and_fig8_naming_unknown_experiments_variants_or_models_are_rejected():
    with open(REPO / "config.yaml") as handle:
        raw = yaml.safe_load(handle)
    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["report"]["text_results"][0]["experiment"] = "table9"
    with pytest.raises(ConfigError, match=r"'report.text_results\[0\].experiment': 'table9' is not an entry"):
        validate_config(broken)
    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["report"]["text_results"][0]["variant"] = "face-blur"
    with pytest.raises(ConfigError, match=r"'report.text_results\[0\].variant': 'face-blur' is not a row"):
        validate_config(broken)
    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["fig8"]["panels"]["coco"]["models"][1] = "keypoint_rcnn_r99"
    with pytest.raises(ConfigError, match=r"'fig8.panels.coco.models\[1\]': 'keypoint_rcnn_r99' is not an entry"):
        validate_config(broken)
    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["fig8"]["panels"]["cityscapes"]["synthetic_variant"] = "body-smudge"
    with pytest.raises(ConfigError, match=r"'fig8.panels.cityscapes.synthetic_variant': 'body-smudge'"):
        validate_config(broken)


def test_missing_root_names_the_key_and_the_readme_section(tmp_path):
    config = validate_config({"datasets": {"cityscapes": {"synthetic": False, "root": str(tmp_path / "nowhere")}}})
    with pytest.raises(DatasetError) as raised:
        check_dataset_roots(config)
    message = str(raised.value)
    assert "datasets.cityscapes.root" in message and "nowhere" in message
    assert "Getting the real datasets" in message
    unset = validate_config({"datasets": {"bdd100k": {"synthetic": False}}})
    with pytest.raises(DatasetError, match="'datasets.bdd100k.root' is not set"):
        check_dataset_roots(unset)
    disabled = validate_config({"datasets": {"bdd100k": {"synthetic": False, "enabled": False}}})
    check_dataset_roots(disabled)  # disabled datasets need no root


def test_nested_command_line_overrides_are_read_as_yaml():
    from anonymization_impact.config import typed_overrides, with_override_hint

    # what Snakemake hands over for --config datasets='{coco: {enabled: false}}' seeds=[0] fig7='{split: val}'
    given = {"datasets": {"coco": {"enabled": "false", "root": "/data/coco"}}, "seeds": ["0", "1"], "fig7": {"split": "val"}, "anonymization": 3}
    typed = typed_overrides(given)
    assert typed == {"datasets": {"coco": {"enabled": False, "root": "/data/coco"}}, "seeds": [0, 1], "fig7": {"split": "val"}, "anonymization": 3}
    message = "config key 'seeds[0]': 'zero' is not of type 'integer'"
    assert "--configfile config.yaml overlay.yaml" in with_override_hint(message, {"seeds": ["zero"]})
    assert with_override_hint(message, {"datasets": {}}) == message  # the key did not come from --config
