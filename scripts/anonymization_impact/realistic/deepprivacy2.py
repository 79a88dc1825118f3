"""DeepPrivacy2's trained generators behind ``realistic.generator.Generator``.

The paper anonymized with three generators of DeepPrivacy2 (dp2) at commit ``DP2_COMMIT``:
the FDF128 and FDF256 face U-Nets (``dp2.generator.stylegan_unet.StyleGANUnet``) and the
TriA-GAN full-body generator at 288 x 160 (``dp2.generator.triagan.TriaGAN``, config
``configs/fdh/triagan/L_im288.py``). ``GENERATORS`` pins each one's config path inside dp2, its
region, crop size, and the checkpoint URL and md5 exactly as written in that config
(``common.model_url`` / ``common.model_md5sum``).

What comes from dp2 at run time (never re-implemented here): the config files and their
loader (``dp2.utils.load_config``), the model classes (``tops.config.instantiate``), the
checkpoint loading (``dp2.infer.load_generator_state``: EMA weights, the TriA-GAN checkpoint
mapper, the multi-modal truncation centres ``w_centers``) and the joint map of TriA-GAN's input
(``dp2.data.transforms.transforms.InsertJointMap``). What is here: the pinned table, the
translation of our ``CropTensors`` into the batch dict each dp2 generator's ``forward`` takes
(pure functions, ``face_batch`` / ``body_batch``), and the checks around loading.

The batch, as dp2's ``Anonymizer.forward_G`` builds it from ``FaceDetection.get_crop`` /
``PersonDetection.get_crop`` (configs/anonymizers/FB_triagan.py: ``insert_joint_map=True``):

- faces (FDF128, FDF256): ``img``, ``condition``, ``mask``. The U-Net reads ``condition`` and
  ``mask`` (no CSE embedding, no keypoints in these configs) and pastes its output into
  ``condition`` where ``mask`` is 1;
- bodies (TriA-GAN): ``img``, ``condition``, ``mask``, ``maskrcnn_mask``, ``keypoints`` (its
  config has ``input_keypoints=True`` with all 17 COCO joints) and ``joint_map`` (``input_joint=True``).
  TriA-GAN composes ``mask * img + (1 - mask) * output``.

dp2 passes the normalized original crop as ``img``. We pass the condition (``mask * image``:
zero inside the region) instead. For a 0/1 mask both give the same output (outside the region
``img`` and ``condition`` are equal; inside it is replaced by the synthesis), and the original
pixels of the region never reach the generator.

The latent: w = ``style_net(z)`` (``SG2StyleNet``: z -> w, ``w_avg``, optional ``w_centers``).
TriA-GAN's ``style_net`` could in principle take keypoints (``latent_space == "W_kp"``), but the
L_im288 config chain (``configs/generators/triagan.py`` -> ``L_im18`` ... ``L_im288``) never sets
``latent_space``, so it is ``"W"`` (``BaseStyleGAN``) and its ``style_net`` is a plain
``SG2StyleNet`` that ignores keypoints: ``mapping(z)`` needs no keypoints. ``load_generator``
refuses a generator whose latent space is not ``"W"``.

Where dp2's configs come from: a pip install of dp2 (``envs/deepprivacy2.yaml``) holds the
``dp2`` package but not the repository's ``configs/`` folder, and dp2 itself resolves config
paths relative to the working directory (the repository root). So ``load_generator`` needs a
checkout of deep_privacy2 at ``DP2_COMMIT``, found in this order: its ``dp2_root`` argument, the
environment variable ``DP2_ROOT``, or the folder above the imported ``dp2`` package when that
has ``configs/`` (a checkout on ``sys.path`` or an editable install). When dp2 is not importable
but such a root is given, the root is put on ``sys.path`` (a checkout is a complete dp2). The
config's pinned md5 is compared with ``GENERATORS``, so a checkout at another commit whose
weights differ is refused.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from ..errors import WorkflowInputError
from ..io import file_digest
from . import DP2_COMMIT, DP2_REPOSITORY
from .generator import CropTensors

ENV_FILE = "envs/deepprivacy2.yaml"
RULE = "anonymize_shard"
ROOT_VARIABLE = "DP2_ROOT"
N_KEYPOINTS = 17


@dataclass(frozen=True)
class PinnedGenerator:
    name: str
    display: str             # for labels
    config: str              # path inside the deep_privacy2 repository
    region: str              # "face" or "body"
    size: tuple[int, int]    # (height, width) of the crop it synthesizes (the config's data.imsize)
    url: str                 # common.model_url of the config
    md5: str                 # common.model_md5sum of the config


GENERATORS: dict[str, PinnedGenerator] = {
    spec.name: spec
    for spec in (
        PinnedGenerator(
            name="fdf128",
            display="FDF128",
            config="configs/fdf/stylegan_fdf128.py",
            region="face",
            size=(128, 128),
            url="https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/66d803c0-55ce-44c0-9d53-815c2c0e6ba4eb458409-9e91-45d1-bce0-95c8a47a57218b102fdf-bea3-44dc-aac4-0fb1d370ef1c",
            md5="bccd4403e7c9bca682566ff3319e8176",
        ),
        PinnedGenerator(
            name="fdf256",
            display="FDF256",
            config="configs/fdf/stylegan.py",
            region="face",
            size=(256, 256),
            url="https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/89660f04-5c11-4dbf-adac-cbe2f11b0aeea25cbf78-7558-475a-b3c7-03f5c10b7934646b0720-ca0a-4d53-aded-daddbfa45c9e",
            md5="e8e32190528af2ed75f0cb792b7f2b07",
        ),
        PinnedGenerator(
            name="triagan",
            display="TriA-GAN L 288x160",
            config="configs/fdh/triagan/L_im288.py",
            region="body",
            size=(288, 160),
            url="https://api.loke.aws.unit.no/dlr-gui-backend-resources-content/v2/contents/links/e62a306a-5295-47dd-8a0e-4f7c05b9ecd44c9fbc76-5ce2-4dd0-9454-04776bef2745659fbec7-fa0a-485b-8501-c94a2439b601",
            md5="b649410e831b45f7800a89c738b411ce",
        ),
    )
}

FACE_KEYS = ("img", "condition", "mask")
BODY_KEYS = ("img", "condition", "mask", "maskrcnn_mask", "keypoints", "joint_map")

JointMapTransform = Callable[[dict], dict]


# --- pure translation: CropTensors -> the batch dict of dp2's generators -----------------------


def _check_image_and_mask(inputs: CropTensors) -> tuple[int, int]:
    condition, mask = inputs.condition, inputs.mask
    if condition.ndim != 4 or condition.shape[:2] != (1, 3):
        raise ValueError(f"condition must be (1, 3, H, W), got {tuple(condition.shape)}")
    height, width = condition.shape[-2:]
    if tuple(mask.shape) != (1, 1, height, width):
        raise ValueError(f"mask must be (1, 1, {height}, {width}), got {tuple(mask.shape)}")
    return height, width


def face_batch(inputs: CropTensors) -> dict[str, torch.Tensor]:
    """The batch of dp2's face U-Nets: ``img``, ``condition``, ``mask`` (float32, (1, C, H, W)).

    ``condition`` is recomputed as ``condition * mask``, so the region is zero even if a caller
    passed the raw image; ``img`` is that same tensor (dp2 passes the original crop there, which
    the U-Net does not read)."""
    _check_image_and_mask(inputs)
    mask = inputs.mask.float()
    condition = inputs.condition.float() * mask
    return {"img": condition, "condition": condition, "mask": mask}


def body_batch(inputs: CropTensors, joint_map_transform: JointMapTransform) -> dict[str, torch.Tensor]:
    """The batch of dp2's TriA-GAN: the face keys plus ``maskrcnn_mask`` (float32 (1, 1, H, W),
    1 on the background), ``keypoints`` (float32 (1, 17, 3), crop-relative, visibility 0/1) and
    ``joint_map`` ((1, 1, H, W), 0 = background, 1..6 = limb class), made by
    ``joint_map_transform``: dp2's ``InsertJointMap(imsize=(H, W))`` at run time.

    An instance without keypoints gets all-zero keypoints (no joint visible), as dp2's dataset
    scripts hold persons whose keypoints were not detected. ``InsertJointMap`` draws on the CPU
    (it concatenates CPU tensors and calls ``.numpy()``), so it gets a CPU copy of the keypoints;
    its map is moved to the condition's device."""
    height, width = _check_image_and_mask(inputs)
    batch = face_batch(inputs)
    device = batch["condition"].device
    if inputs.person_mask is None:
        raise ValueError("a body generator needs person_mask (dp2's maskrcnn_mask: 1 = background)")
    if tuple(inputs.person_mask.shape) != (1, 1, height, width):
        raise ValueError(f"person_mask must be (1, 1, {height}, {width}), got {tuple(inputs.person_mask.shape)}")
    keypoints = inputs.keypoints
    if keypoints is None:
        keypoints = torch.zeros((1, N_KEYPOINTS, 3), dtype=torch.float32, device=device)
    if tuple(keypoints.shape) != (1, N_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (1, {N_KEYPOINTS}, 3), got {tuple(keypoints.shape)}")
    keypoints = keypoints.float().to(device)
    made = joint_map_transform({"img": batch["condition"], "keypoints": keypoints.detach().cpu().clone()})
    joint_map = made["joint_map"].to(device)
    if tuple(joint_map.shape) != (1, 1, height, width):
        raise ValueError(f"the joint map transform made {tuple(joint_map.shape)}, expected (1, 1, {height}, {width})")
    batch.update(maskrcnn_mask=inputs.person_mask.float(), keypoints=keypoints, joint_map=joint_map)
    return batch


def generator_batch(region: str, inputs: CropTensors, joint_map_transform: JointMapTransform | None = None) -> dict:
    if region == "face":
        return face_batch(inputs)
    if region == "body":
        if joint_map_transform is None:
            raise ValueError("a body generator needs a joint map transform (dp2's InsertJointMap)")
        return body_batch(inputs, joint_map_transform)
    raise ValueError(f"unknown region {region!r}; expected 'face' or 'body'")


def generator_label(spec: PinnedGenerator, md5: str | None = None, weights_name: str | None = None) -> str:
    """What made the pixels: the paper's checkpoint, or (``md5`` another file's) dp2's architecture
    with weights that are not the paper's, named by their `weights` entry."""
    if md5 is None or md5 == spec.md5:
        return f"DeepPrivacy2 {spec.display} (md5 {spec.md5[:6]}…)"
    return f"DeepPrivacy2 {spec.display} architecture with weights '{weights_name or 'unnamed'}' (md5 {md5[:6]}…; not the paper's weights)"


def pinned(name: str) -> PinnedGenerator:
    if name not in GENERATORS:
        raise WorkflowInputError(f"unknown DeepPrivacy2 generator {name!r}; expected one of {sorted(GENERATORS)}")
    return GENERATORS[name]


# --- the adapter -------------------------------------------------------------------------------


class DeepPrivacy2Generator:
    """A dp2 generator module (``StyleGANUnet`` or ``TriaGAN``, or anything with their
    interface: a ``style_net`` with ``z_dim``, ``w_avg`` and optionally ``w_centers``, and
    ``forward(**batch, w=w)`` returning ``{"img": ...}``) as a ``realistic.generator.Generator``.

    ``synthesize`` returns dp2's ``"img"`` output, nominally in [-1, 1] and, like dp2, not
    clamped (``generator.to_pixels`` clamps), so HM-LO's gradients reach ``w`` everywhere."""

    def __init__(self, module: torch.nn.Module, spec: PinnedGenerator | str,
                 joint_map_transform: JointMapTransform | None = None, label: str | None = None):
        self.spec = pinned(spec) if isinstance(spec, str) else spec
        if self.spec.region == "body" and joint_map_transform is None:
            raise ValueError(f"{self.spec.name}: a body generator needs a joint map transform (dp2's InsertJointMap)")
        self.module = module
        self.joint_map_transform = joint_map_transform
        self.label = label or generator_label(self.spec)
        self.region = self.spec.region
        self.size = tuple(self.spec.size)
        self.z_dim = int(module.style_net.z_dim)

    @property
    def device(self) -> torch.device:
        return self.module.style_net.w_avg.device

    @property
    def w_avg(self) -> torch.Tensor:
        return self.module.style_net.w_avg

    @property
    def w_centers(self) -> torch.Tensor | None:
        return getattr(self.module.style_net, "w_centers", None)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """(n, z_dim) -> (n, w_dim) through dp2's ``style_net`` (keypoints are not needed: see the
        module docstring), on the generator's device."""
        return self.module.style_net(z.to(self.device))

    def synthesize(self, inputs: CropTensors, w: torch.Tensor) -> torch.Tensor:
        height, width = inputs.condition.shape[-2:]
        if (height, width) != self.size:
            raise ValueError(f"{self.label} synthesizes {self.size} crops, got {(height, width)}")
        device = self.device
        moved = CropTensors(
            condition=inputs.condition.to(device),
            mask=inputs.mask.to(device),
            person_mask=None if inputs.person_mask is None else inputs.person_mask.to(device),
            keypoints=None if inputs.keypoints is None else inputs.keypoints.to(device),
        )
        batch = generator_batch(self.region, moved, self.joint_map_transform)
        output = self.module(**batch, w=w.to(device))
        image = output["img"] if isinstance(output, dict) else output
        if tuple(image.shape) != (1, 3, height, width):
            raise ValueError(f"{self.label} returned {tuple(image.shape)}, expected (1, 3, {height}, {width})")
        return image


# --- loading dp2 -------------------------------------------------------------------------------


def _missing_dp2(error: BaseException) -> WorkflowInputError:
    return WorkflowInputError(
        f"realistic anonymization needs DeepPrivacy2 (dp2 at commit {DP2_COMMIT[:10]}) and its "
        f"dependencies, which this Python cannot import ({type(error).__name__}: {error}). Run the "
        f"rule {RULE} in the conda env {ENV_FILE} (snakemake --use-conda / --sdm conda), or create "
        f"that env by hand and run from it"
    )


def _import_dp2(root: Path | None) -> SimpleNamespace:
    """dp2's config loader, instantiate, load_generator_state and InsertJointMap. If dp2 is not
    importable and a checkout root is known, the checkout goes on sys.path for a second try."""

    def attempt() -> SimpleNamespace:
        utils = importlib.import_module("dp2.utils")
        infer = importlib.import_module("dp2.infer")
        transforms = importlib.import_module("dp2.data.transforms.transforms")
        config = importlib.import_module("tops.config")
        return SimpleNamespace(load_config=utils.load_config, load_generator_state=infer.load_generator_state,
                               InsertJointMap=transforms.InsertJointMap, instantiate=config.instantiate,
                               package=Path(importlib.import_module("dp2").__file__).resolve().parent)

    try:
        return attempt()
    except ImportError as error:
        if root is None or str(root) in sys.path:
            raise _missing_dp2(error) from error
        first = error
    sys.path.insert(0, str(root))
    for module in [name for name in sys.modules if name == "dp2" or name.startswith("dp2.")]:
        del sys.modules[module]  # a half-imported dp2 from the first try
    try:
        return attempt()
    except ImportError as error:
        sys.path.remove(str(root))
        raise _missing_dp2(error) from first


def _root_from_arguments(dp2_root: str | Path | None) -> Path | None:
    if dp2_root is not None:
        return Path(dp2_root).resolve()
    if os.environ.get(ROOT_VARIABLE):
        return Path(os.environ[ROOT_VARIABLE]).resolve()
    return None


def resolve_config(spec: PinnedGenerator, root: Path | None, package: Path | None) -> Path:
    """The config file of ``spec`` in a deep_privacy2 checkout: under ``root`` if given, else
    beside the imported dp2 package (checkout or editable install)."""
    candidates = [root] if root is not None else ([package.parent] if package is not None else [])
    for candidate in candidates:
        path = candidate / spec.config
        if path.is_file():
            return path
    where = f"{candidates[0]}" if candidates else "nowhere (dp2 was pip-installed without its configs/)"
    raise WorkflowInputError(
        f"DeepPrivacy2's config {spec.config} was not found in {where}. The pip-installed dp2 "
        f"package does not include the repository's configs/: set {ROOT_VARIABLE} to a checkout of "
        f"{DP2_REPOSITORY} at commit {DP2_COMMIT}"
    )


def _torch_load(path: Path) -> dict:
    # dp2's checkpoints are plain pickles; they are md5-checked before loading
    extra = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    return torch.load(str(path), map_location="cpu", **extra)


def load_generator(name: str, checkpoint_path: str | Path, device: str | torch.device = "cpu", *,
                   dp2_root: str | Path | None = None, md5: str | None = None, weights_name: str | None = None) -> DeepPrivacy2Generator:
    """Build the pinned generator ``name`` with dp2's own config and code, load the local
    checkpoint with dp2's ``load_generator_state``, eval mode, no parameter gradients (HM-LO
    differentiates with respect to w only), on ``device``.

    The checkpoint's md5 is always checked here (the workflow's download checked it too, so the
    label's md5 is the file's): against ``md5``, the checksum of its `weights` entry
    ``weights_name``, or the paper's pinned md5 when None. A file that is not the paper's loads
    only through an entry of its own (path and md5), and its label says so.

    Raises ``WorkflowInputError`` when dp2 cannot be imported (the message names
    ``envs/deepprivacy2.yaml`` and the rule ``anonymize_shard``), when no config checkout is
    found (see the module docstring: ``dp2_root`` / ``DP2_ROOT``), when the checkpoint does not
    have the expected md5, or when the config does not pin the paper's md5 (another commit)."""
    spec = pinned(name)
    root = _root_from_arguments(dp2_root)
    dp2 = _import_dp2(root)
    checkpoint = Path(checkpoint_path)
    if not checkpoint.is_file():
        raise WorkflowInputError(f"the {spec.display} checkpoint {checkpoint} does not exist; it is downloaded from {spec.url}")
    expected = md5 or spec.md5
    found = file_digest(checkpoint, "md5")
    if found != expected:
        named = f"weights entry '{weights_name}'" if weights_name else "the paper's pinned md5"
        advice = f"download it again from {spec.url}" if expected == spec.md5 else "it is not the file that entry names"
        raise WorkflowInputError(f"the {spec.display} checkpoint {checkpoint} has md5 {found}, expected {expected} ({named}): {advice}")
    config_file = resolve_config(spec, root, dp2.package)
    cfg = dp2.load_config(str(config_file))
    if str(cfg.common.get("model_md5sum")) != spec.md5:
        raise WorkflowInputError(
            f"{config_file} pins md5 {cfg.common.get('model_md5sum')}, expected {spec.md5}: the deep_privacy2 "
            f"checkout is not at commit {DP2_COMMIT}"
        )
    if tuple(cfg.data.imsize) != spec.size:
        raise WorkflowInputError(f"{config_file} synthesizes {tuple(cfg.data.imsize)} crops, expected {spec.size}")
    module = dp2.instantiate(cfg.generator)
    ckpt_mapper = dp2.instantiate(cfg.ckpt_mapper) if hasattr(cfg, "ckpt_mapper") else None  # as build_trained_generator
    dp2.load_generator_state(_torch_load(checkpoint), module, ckpt_mapper)
    latent_space = getattr(module, "latent_space", "W")
    if latent_space != "W":
        raise WorkflowInputError(f"{spec.config}: latent space {latent_space!r}; this adapter maps z -> w without keypoints ('W' only)")
    module.imsize = tuple(cfg.data.imsize)
    module.eval().requires_grad_(False).to(device)
    joint_map = dp2.InsertJointMap(imsize=tuple(cfg.data.imsize)) if spec.region == "body" else None
    return DeepPrivacy2Generator(module, spec, joint_map, label=generator_label(spec, expected, weights_name))
