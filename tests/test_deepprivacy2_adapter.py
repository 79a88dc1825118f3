"""The DeepPrivacy2 adapter without DeepPrivacy2: batch translation, the pinned table (against the
read-only dp2 mirror where this machine has it), the import error, and the adapter around fake
dp2 modules (a generator with dp2's interface, and a fake dp2 package for load_generator)."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.io import file_digest
from anonymization_impact.realistic import deepprivacy2 as dp2_adapter
from anonymization_impact.realistic.deepprivacy2 import (
    BODY_KEYS,
    DP2_COMMIT,
    FACE_KEYS,
    GENERATORS,
    DeepPrivacy2Generator,
    body_batch,
    face_batch,
    load_generator,
)
from anonymization_impact.realistic.generator import crop_keypoints, crop_tensors, to_pixels
from anonymization_impact.realistic.latents import initial_w

from conftest import REPO

MIRROR = Path("/work/.mirror/hukkelas+deep_privacy2/repo")


def make_inputs(height=32, width=24, body=False, keypoints=True, seed=0) -> tuple:
    """A random uint8 crop, its region and CropTensors (the region a centred rectangle)."""
    rng = np.random.default_rng(seed)
    crop = rng.integers(1, 256, size=(height, width, 3), dtype=np.uint8)  # no pixel is zero
    known = np.ones((height, width), dtype=bool)
    known[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = False
    person = ~known if body else None
    points = None
    if body and keypoints:
        points = np.zeros((17, 3), dtype=np.float32)
        points[:, 0] = rng.uniform(0, width, 17)
        points[:, 1] = rng.uniform(0, height, 17)
        points[:, 2] = 2
        points[3, 2] = 0
        points = crop_keypoints(points, (0, 0, width, height))
    return crop, known, crop_tensors(crop, known, person, points)


def fake_joint_map(seen: list):
    """Stands in for dp2's InsertJointMap: records what it got, draws nothing (all background)."""

    def transform(batch: dict) -> dict:
        seen.append({key: value for key, value in batch.items()})
        height, width = batch["img"].shape[-2:]
        batch["joint_map"] = torch.zeros((batch["img"].shape[0], 1, height, width), dtype=torch.uint8).to(batch["img"].device)
        return batch

    return transform


# --- batch translation ---------------------------------------------------------------------------


def test_face_batch_keys_shapes_dtypes_and_ranges():
    _, known, inputs = make_inputs()
    batch = face_batch(inputs)
    assert set(batch) == set(FACE_KEYS)
    assert batch["condition"].shape == (1, 3, 32, 24) and batch["mask"].shape == (1, 1, 32, 24)
    assert all(value.dtype == torch.float32 for value in batch.values())
    assert batch["condition"].min() >= -1 and batch["condition"].max() <= 1
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch["mask"][0, 0].bool(), torch.from_numpy(known))


def test_img_is_the_condition_never_the_original_pixels():
    crop, known, inputs = make_inputs(body=True)
    original = torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    for batch in (face_batch(inputs), body_batch(inputs, fake_joint_map([]))):
        region = ~torch.from_numpy(known)
        assert torch.equal(batch["img"], batch["condition"])
        assert (batch["img"][0][:, region] == 0).all()          # zero inside the region
        assert (original[0][:, region] != 0).all()              # where the original is not
        assert torch.equal(batch["img"][0][:, ~region], original[0][:, ~region])  # the original outside


def test_a_condition_that_still_holds_the_region_is_masked_again():
    crop, known, inputs = make_inputs()
    inputs.condition = torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1  # raw image
    batch = face_batch(inputs)
    assert (batch["img"][0][:, ~torch.from_numpy(known)] == 0).all()


def test_body_batch_keys_shapes_dtypes_and_what_the_joint_map_gets():
    _, known, inputs = make_inputs(body=True)
    seen = []
    batch = body_batch(inputs, fake_joint_map(seen))
    assert set(batch) == set(BODY_KEYS)
    assert batch["maskrcnn_mask"].shape == (1, 1, 32, 24) and batch["maskrcnn_mask"].dtype == torch.float32
    assert torch.equal(batch["maskrcnn_mask"][0, 0].bool(), torch.from_numpy(known))  # 1 = background
    assert batch["keypoints"].shape == (1, 17, 3) and batch["keypoints"].dtype == torch.float32
    assert batch["keypoints"][..., :2].min() >= 0 and batch["keypoints"][..., :2].max() <= 1
    assert set(batch["keypoints"][..., 2].unique().tolist()) <= {0.0, 1.0}
    assert batch["keypoints"][0, 3, 2] == 0
    assert batch["joint_map"].shape == (1, 1, 32, 24)
    # InsertJointMap gets the condition (for batch size and device) and a CPU copy of the keypoints
    assert len(seen) == 1 and set(seen[0]) == {"img", "keypoints"}
    assert seen[0]["keypoints"].device.type == "cpu"
    assert torch.equal(seen[0]["keypoints"], batch["keypoints"]) and seen[0]["keypoints"] is not batch["keypoints"]
    assert seen[0]["img"] is batch["condition"]


def test_a_body_without_keypoints_gets_no_visible_joint():
    _, _, inputs = make_inputs(body=True, keypoints=False)
    batch = body_batch(inputs, fake_joint_map([]))
    assert torch.equal(batch["keypoints"], torch.zeros((1, 17, 3)))


def test_bad_inputs_are_refused():
    _, _, face = make_inputs()
    with pytest.raises(ValueError, match="person_mask"):
        body_batch(face, fake_joint_map([]))
    _, _, body = make_inputs(body=True)
    body.keypoints = body.keypoints[:, :7]
    with pytest.raises(ValueError, match="keypoints"):
        body_batch(body, fake_joint_map([]))
    face.mask = face.mask[..., :-1]
    with pytest.raises(ValueError, match="mask"):
        face_batch(face)


# --- the pinned table ---------------------------------------------------------------------------


def test_pinned_table_format():
    assert re.fullmatch(r"[0-9a-f]{40}", DP2_COMMIT)
    assert set(GENERATORS) == {"fdf128", "fdf256", "triagan"}
    assert {name: (spec.region, spec.size) for name, spec in GENERATORS.items()} == {
        "fdf128": ("face", (128, 128)), "fdf256": ("face", (256, 256)), "triagan": ("body", (288, 160))}
    for name, spec in GENERATORS.items():
        assert spec.name == name
        assert re.fullmatch(r"[0-9a-f]{32}", spec.md5), name
        assert spec.url.startswith("https://") and spec.config.startswith("configs/") and spec.config.endswith(".py")
    assert len({spec.md5 for spec in GENERATORS.values()}) == 3


def mirror_show(path: str) -> str:
    result = subprocess.run(["git", "-C", str(MIRROR), "show", f"{DP2_COMMIT}:{path}"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"the dp2 mirror has no {path} at {DP2_COMMIT}: {result.stderr.strip()}")
    return result.stdout


needs_mirror = pytest.mark.skipif(not MIRROR.exists(), reason=f"no DeepPrivacy2 mirror at {MIRROR}")


@needs_mirror
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_pinned_urls_and_md5_are_those_of_the_dp2_configs(name):
    spec = GENERATORS[name]
    text = mirror_show(spec.config)
    urls = re.findall(r"model_url\s*=\s*\"([^\"]+)\"", text)
    md5s = re.findall(r"model_md5sum\s*=\s*\"([^\"]+)\"", text)
    assert urls == [spec.url] and md5s == [spec.md5]


@needs_mirror
def test_tria_gan_mapping_needs_no_keypoints():
    """No config of the L_im288 chain sets latent_space (so it stays "W"), the style net is
    SG2StyleNet, and TriA-GAN takes keypoints and the joint map as inputs."""
    chain = ["configs/generators/triagan.py"] + [f"configs/fdh/triagan/L_im{size}.py" for size in (18, 36, 72, 144, 288)]
    texts = {path: mirror_show(path) for path in chain}
    assert not any("latent_space" in text for text in texts.values())
    assert "style_net=L(SG2StyleNet)" in texts["configs/generators/triagan.py"]
    assert "input_joint=True" in texts["configs/generators/triagan.py"]
    assert "input_keypoints=True" in texts["configs/fdh/triagan/L_im18.py"]
    assert "def forward(self, z, update_emas=False, **kwargs)" in mirror_show("dp2/generator/base.py")


def test_the_env_runs_dp2_from_its_checkout_not_from_a_pip_install():
    """dp2's setup.py cannot be installed beside torchvision 0.14.1 (docs/deepprivacy2.md): the env
    carries its requirements, and dp2 comes from the checkout at DP2_COMMIT (rule download_deepprivacy2)."""
    env = yaml.safe_load((REPO / dp2_adapter.ENV_FILE).read_text())
    pip = [entry for entry in env["dependencies"] if isinstance(entry, dict)][0]["pip"]
    assert not [line for line in pip if "deep_privacy2" in line or line.split()[0] == "dp2"]
    assert {"tops", "clip", "detectron2-densepose"} <= {line.split()[0] for line in pip}
    assert "defaults" not in env["channels"] and "nodefaults" in env["channels"]


# --- without dp2 ---------------------------------------------------------------------------------


def test_the_module_imports_without_dp2():
    code = ("import sys; import anonymization_impact.realistic.deepprivacy2; "
            "assert not {'dp2', 'tops'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "scripts")})


def test_load_generator_without_dp2_names_the_env_and_the_rule(monkeypatch, tmp_path):
    monkeypatch.delenv("DP2_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "dp2", None)  # import dp2 -> ImportError, installed or not
    with pytest.raises(WorkflowInputError, match=r"envs/deepprivacy2\.yaml") as error:
        load_generator("fdf128", tmp_path / "missing.ckpt")
    assert "anonymize_shard" in str(error.value)
    with pytest.raises(WorkflowInputError, match="unknown DeepPrivacy2 generator"):
        load_generator("fdf512", tmp_path / "missing.ckpt")


# --- the adapter around a generator with dp2's interface -----------------------------------------


class FakeStyleNet(torch.nn.Module):
    def __init__(self, z_dim=8, w_dim=6, centres=True):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.fc = torch.nn.Linear(z_dim, w_dim)
        self.register_buffer("w_avg", torch.full((w_dim,), 0.5))
        if centres:
            self.register_buffer("w_centers", torch.arange(4 * w_dim, dtype=torch.float32).view(4, w_dim))

    def forward(self, z, update_emas=False, **kwargs):
        return self.fc(z)


class FakeDP2Generator(torch.nn.Module):
    """dp2's generator interface: forward(condition, mask, ..., w) -> {"img": composed}."""

    def __init__(self, centres=True):
        super().__init__()
        self.style_net = FakeStyleNet(centres=centres)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.style = torch.nn.Linear(6, 3)
        self.calls = []

    def forward(self, condition, mask, img=None, w=None, **kwargs):
        self.calls.append({"condition": condition, "mask": mask, "img": img, "w": w, **kwargs})
        out = torch.tanh(self.conv(condition) + self.style(w)[..., None, None])
        return {"img": mask * img + (1 - mask) * out}


def test_synthesize_passes_w_and_the_batch_and_gradients_reach_w():
    module = FakeDP2Generator()
    module.requires_grad_(False)
    generator = DeepPrivacy2Generator(module, "fdf128")
    assert generator.label == "DeepPrivacy2 FDF128 (md5 bccd44…)"
    assert (generator.region, generator.size, generator.z_dim) == ("face", (128, 128), 8)
    assert torch.equal(generator.w_avg, torch.full((6,), 0.5)) and generator.w_centers.shape == (4, 6)
    _, known, inputs = make_inputs(128, 128)
    w = torch.randn((1, 6), requires_grad=True)
    image = generator.synthesize(inputs, w)
    assert image.shape == (1, 3, 128, 128)
    call = module.calls[-1]
    assert call["w"] is w or torch.equal(call["w"], w)
    assert set(call) == {"condition", "mask", "img", "w"}
    assert torch.equal(call["img"], call["condition"])
    image.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    region = ~torch.from_numpy(known)
    assert torch.equal(image[0][:, ~region], inputs.condition[0][:, ~region])  # kept outside the region
    assert to_pixels(image).min() >= 0 and to_pixels(image).max() <= 255


def test_body_adapter_gets_every_body_key_and_a_size_check():
    module = FakeDP2Generator(centres=False)
    seen = []
    generator = DeepPrivacy2Generator(module, "triagan", fake_joint_map(seen))
    assert generator.w_centers is None and generator.region == "body" and generator.size == (288, 160)
    _, _, inputs = make_inputs(288, 160, body=True)
    generator.synthesize(inputs, torch.zeros((1, 6)))
    assert set(module.calls[-1]) == set(BODY_KEYS) | {"w"} and len(seen) == 1
    _, _, small = make_inputs(32, 24, body=True)
    with pytest.raises(ValueError, match="288, 160"):
        generator.synthesize(small, torch.zeros((1, 6)))
    with pytest.raises(ValueError, match="joint map"):
        DeepPrivacy2Generator(FakeDP2Generator(), "triagan")


def test_the_adapter_serves_the_latent_sampling():
    generator = DeepPrivacy2Generator(FakeDP2Generator(), "fdf256")
    z = torch.randn((5, 8))
    assert generator.mapping(z).shape == (5, 6)
    w = initial_w(generator, "multimodal", 0.0, np.random.default_rng(1))
    assert any(torch.allclose(w[0], centre) for centre in generator.w_centers)
    assert torch.allclose(initial_w(generator, "unimodal", 0.0, np.random.default_rng(1))[0], generator.w_avg)


# --- load_generator around a fake dp2 package ----------------------------------------------------


class FakeConfig:
    def __init__(self, md5, imsize, with_mapper):
        self.common = {"model_md5sum": md5}
        self.data = types.SimpleNamespace(imsize=list(imsize))
        self.generator = "generator-config"
        if with_mapper:
            self.ckpt_mapper = "mapper-config"


@pytest.fixture
def fake_dp2(monkeypatch, tmp_path):
    """A fake dp2 + tops in sys.modules, a checkout root with the config files, a checkpoint."""
    record = {"loaded_configs": [], "states": []}
    root = tmp_path / "deep_privacy2"
    for spec in GENERATORS.values():
        (root / spec.config).parent.mkdir(parents=True, exist_ok=True)
        (root / spec.config).write_text("# fake\n")
    state = {"md5": None, "imsize": None, "latent_space": "W"}

    def load_config(path):
        record["loaded_configs"].append(path)
        spec = next(spec for spec in GENERATORS.values() if path.endswith(spec.config))
        return FakeConfig(state["md5"] or spec.md5, state["imsize"] or spec.size, spec.region == "body")

    def instantiate(config):
        if config == "mapper-config":
            return lambda weights: weights
        module = FakeDP2Generator(centres=False)
        module.latent_space = state["latent_space"]
        return module

    def load_generator_state(ckpt, module, mapper):
        record["states"].append((ckpt, mapper))
        module.style_net.register_buffer("w_centers", ckpt["w_centers"])

    class InsertJointMap:
        def __init__(self, imsize):
            self.imsize = imsize

    modules = {
        "dp2": types.ModuleType("dp2"), "dp2.utils": types.ModuleType("dp2.utils"),
        "dp2.infer": types.ModuleType("dp2.infer"), "dp2.data": types.ModuleType("dp2.data"),
        "dp2.data.transforms": types.ModuleType("dp2.data.transforms"),
        "dp2.data.transforms.transforms": types.ModuleType("dp2.data.transforms.transforms"),
        "tops": types.ModuleType("tops"), "tops.config": types.ModuleType("tops.config"),
    }
    modules["dp2"].__file__ = str(tmp_path / "site-packages" / "dp2" / "__init__.py")
    modules["dp2.utils"].load_config = load_config
    modules["dp2.infer"].load_generator_state = load_generator_state
    modules["dp2.data.transforms.transforms"].InsertJointMap = InsertJointMap
    modules["tops.config"].instantiate = instantiate
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("DP2_ROOT", raising=False)
    checkpoint = tmp_path / "weights.ckpt"
    torch.save({"EMA_generator": {}, "w_centers": torch.ones((3, 6))}, checkpoint)
    return types.SimpleNamespace(root=root, checkpoint=checkpoint, record=record, state=state, monkeypatch=monkeypatch)


def pin_md5(monkeypatch, name, checkpoint):
    spec = GENERATORS[name]
    monkeypatch.setitem(GENERATORS, name, type(spec)(**{**spec.__dict__, "md5": file_digest(checkpoint, "md5")}))


def test_load_generator_through_dp2s_own_functions(fake_dp2):
    pin_md5(fake_dp2.monkeypatch, "triagan", fake_dp2.checkpoint)
    fake_dp2.monkeypatch.setenv("DP2_ROOT", str(fake_dp2.root))
    generator = load_generator("triagan", fake_dp2.checkpoint)
    assert fake_dp2.record["loaded_configs"] == [str(fake_dp2.root / "configs/fdh/triagan/L_im288.py")]
    (ckpt, mapper), = fake_dp2.record["states"]
    assert torch.equal(ckpt["w_centers"], torch.ones((3, 6))) and mapper is not None  # TriA-GAN's ckpt_mapper
    assert generator.w_centers.shape == (3, 6) and generator.joint_map_transform.imsize == (288, 160)
    assert not generator.module.training and not any(p.requires_grad for p in generator.module.parameters())
    assert generator.module.imsize == (288, 160)


def test_load_generator_checks(fake_dp2):
    own = {"md5": file_digest(fake_dp2.checkpoint, "md5"), "weights_name": "test_fdf128"}  # an entry of its own for this file
    # no checkout: dp2 pip-installed without configs/
    with pytest.raises(WorkflowInputError, match="DP2_ROOT"):
        load_generator("fdf128", fake_dp2.checkpoint, **own)
    # the checkpoint's md5: the paper's unless an entry names another
    with pytest.raises(WorkflowInputError, match="bccd4403e7c9bca682566ff3319e8176.*the paper's pinned md5"):
        load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root)
    with pytest.raises(WorkflowInputError, match="expected 0{32} .weights entry 'test_fdf128'.: it is not the file"):
        load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root, md5="0" * 32, weights_name="test_fdf128")
    with pytest.raises(WorkflowInputError, match="does not exist"):
        load_generator("fdf128", fake_dp2.checkpoint.with_name("none.ckpt"), dp2_root=fake_dp2.root, **own)
    # a checkout at another commit
    fake_dp2.state["md5"] = "0" * 32
    with pytest.raises(WorkflowInputError, match=DP2_COMMIT):
        load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root, **own)
    fake_dp2.state["md5"] = None
    fake_dp2.state["latent_space"] = "W_kp"
    with pytest.raises(WorkflowInputError, match="W_kp"):
        load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root, **own)
    fake_dp2.state["latent_space"] = "W"
    generator = load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root, **own)
    assert generator.joint_map_transform is None and fake_dp2.record["states"][-1][1] is None  # no mapper for faces
    # weights that are not the paper's say so wherever the label goes (audits, tables)
    assert generator.label == f"DeepPrivacy2 FDF128 architecture with weights 'test_fdf128' (md5 {own['md5'][:6]}…; not the paper's weights)"


def test_load_generator_has_no_way_around_the_md5_check(fake_dp2):
    """The only arguments about the checkpoint are its file and the md5 it must have."""
    import inspect

    assert set(inspect.signature(load_generator).parameters) == {"name", "checkpoint_path", "device", "dp2_root", "md5", "weights_name"}
    for md5 in (None, "", file_digest(fake_dp2.checkpoint, "md5").upper()):
        with pytest.raises(WorkflowInputError, match="has md5"):
            load_generator("fdf128", fake_dp2.checkpoint, dp2_root=fake_dp2.root, md5=md5)


def test_load_generators_hands_each_role_the_md5_of_its_weights_entry(monkeypatch):
    from anonymization_impact.realistic import loading

    calls = []
    monkeypatch.setattr(dp2_adapter, "load_generator", lambda name, path, device, **options: calls.append((name, path, device, options)))
    settings = {"kind": "deepprivacy2", "roles": ["face", "face_hr"], "names": {"face": "a", "face_hr": "b", "body": "c"}, "md5": {"face": "1" * 32, "face_hr": "2" * 32}}
    loading.load_generators(settings, {"face": "f.ckpt", "face_hr": "g.ckpt"}, "cpu", dp2_root="dp2")
    assert calls == [("fdf128", "f.ckpt", "cpu", {"dp2_root": "dp2", "md5": "1" * 32, "weights_name": "a"}),
                     ("fdf256", "g.ckpt", "cpu", {"dp2_root": "dp2", "md5": "2" * 32, "weights_name": "b"})]


def test_load_generator_finds_the_configs_beside_a_checkout_on_the_path(fake_dp2):
    pin_md5(fake_dp2.monkeypatch, "fdf256", fake_dp2.checkpoint)
    sys.modules["dp2"].__file__ = str(fake_dp2.root / "dp2" / "__init__.py")  # dp2 imported from the checkout
    generator = load_generator("fdf256", fake_dp2.checkpoint, weights_name="deepprivacy2_fdf256")
    assert fake_dp2.record["loaded_configs"] == [str(fake_dp2.root / "configs/fdf/stylegan.py")]
    assert generator.label == f"DeepPrivacy2 FDF256 (md5 {file_digest(fake_dp2.checkpoint, 'md5')[:6]}…)" and generator.size == (256, 256)
