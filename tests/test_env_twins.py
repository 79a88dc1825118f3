"""tools/env_twins.py: runnable virtualenv twins of the conda envs.

The unit tests (translation of an env file into an install plan, the cache, the check) run
everywhere in seconds. The tests marked `stacks` build (or reuse) every env's twin and run it:
versions equal the env file's, the framework imports, the package modules the env's rules import.
They are deselected by `make test` (pyproject addopts) and run by `make test-stacks`; where this
machine lacks a pyenv Python or the wheelhouse they skip with one line naming what is missing.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from stacks import env_twins, extra_paths, stacks_machine  # noqa: F401 (fixtures)
from stacks import run as _run
from stacks import twin as _twin

ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


# --------------------------------------------------------------------------- a fake wheelhouse


def _archive(path: Path, top: str, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def wheelhouse(tmp_path) -> env_twins.Wheelhouse:
    """A wheelhouse laid out like shared/wheelhouse, with empty stand-in files."""
    root = tmp_path / "wheelhouse"
    (root / "sources").mkdir(parents=True)
    (root / "wheels" / "cp39-torch1.12.1").mkdir(parents=True)
    (root / "wheels" / "cp39-torch1.12.1" / "detectron2-0.6-cp39-cp39-linux_x86_64.whl").write_text("")
    (root / "wheels" / "cp39-torch1.12.1" / "mmcv_full-1.7.1-cp39-cp39-linux_x86_64.whl").write_text("")
    (root / "README.md").write_text(
        "| folder | file | built from | against |\n|---|---|---|---|\n"
        "| `cp39-torch1.12.1/` | `detectron2-0.6-cp39-cp39-linux_x86_64.whl` | detectron2 58e472e | Python 3.9.18, torch 1.12.1 |\n"
        "| `cp39-torch1.12.1/` | `mmcv_full-1.7.1-cp39-cp39-linux_x86_64.whl` | PyPI sdist mmcv-full 1.7.1 | Python 3.9.18, torch 1.12.1 |\n"
    )
    commit = "58e472e076a5d861fdcf773d9254a3664e045bf8"
    _archive(root / "sources" / f"detectron2-{commit}.tar.gz", "detectron2-58e472e", {"setup.py": "import torch\nsetup(name='detectron2')\n"})
    other = "96c752ce821a3340e27edd51c28a00665dd32a30"
    _archive(
        root / "sources" / f"detectron2-{other}.tar.gz",
        "detectron2-96c752c",
        {"setup.py": "", "projects/DensePose/setup.py": "setup(install_requires=['av>=8.0.3', 'detectron2@git+https://github.com/facebookresearch/detectron2.git'])\n"},
    )
    _archive(
        root / "sources" / "app-0123456789abcdef0123456789abcdef01234567.tar.gz",
        "app-0123456",
        {
            "setup.py": f"setup(install_requires=['numpy>=1.20', 'imageio==2.4.1', 'densepose@git+https://github.com/facebookresearch/detectron2@{other}#subdirectory=projects/DensePose', 'tool@git+https://github.com/someone/tool.git'])\n"
        },
    )
    _archive(root / "sources" / "tool-89abcdef0123456789abcdef0123456789abcdef.tar.gz", "tool-89abcde", {"setup.py": "setup(install_requires=['easydict'])\n"})
    return env_twins.Wheelhouse(root)


def _env(tmp_path: Path, dependencies: list, name: str = "x") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"channels": ["conda-forge", "nodefaults"], "dependencies": dependencies}))
    return path


# --------------------------------------------------------------------------- translation


def test_conda_pins_become_pypi_pins_and_conda_only_packages_are_named_with_a_reason(tmp_path):
    env = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", "torchvision=0.13.1", "cudatoolkit=11.3.1", "mkl=2023.2.0", "matplotlib-base=3.5.3", "pyyaml=6.0", "pip=22.3.1"])
    plan = env_twins.make_plan(env, None)
    assert plan.python == "3.9" and plan.torch == "1.12.1" and plan.pip_version == "22.3.1"
    assert plan.conda_requirements == ["torch==1.12.1", "torchvision==0.13.1", "matplotlib==3.5.3", "pyyaml==6.0"]
    assert set(plan.dropped) == {"cudatoolkit=11.3.1", "mkl=2023.2.0"} and all(plan.dropped.values())
    assert plan.expected == {"torch": "1.12.1", "torchvision": "0.13.1", "matplotlib": "3.5.3", "pyyaml": "6.0", "pip": "22.3.1"}


def test_the_pip_section_is_kept_in_order_and_pins_torch(tmp_path):
    env = _env(tmp_path, ["python=3.11", "numpy=2.4.6", {"pip": ["torch==2.14.1", "Pillow==13.0.0", "cityscapesScripts==2.3.0"]}])
    plan = env_twins.make_plan(env, None)
    assert plan.pip_lines == ["torch==2.14.1", "Pillow==13.0.0", "cityscapesScripts==2.3.0"]
    assert plan.torch == "2.14.1" and plan.expected["pillow"] == "13.0.0" and plan.expected["cityscapesscripts"] == "2.3.0"
    assert "pillow==13.0.0" in env_twins.constraints(plan)


def test_unpinned_or_unknown_entries_are_refused(tmp_path):
    for dependencies in (["python=3.11", "numpy"], ["python=3.11", {"pip": ["numpy>=2"]}], ["python=3.11", {"pip": ["--pre"]}], ["numpy=2.4.6"]):
        with pytest.raises(env_twins.TwinError):
            env_twins.make_plan(_env(tmp_path, dependencies), None)


def test_a_github_commit_comes_from_the_wheelhouse_wheel_built_from_it(tmp_path, wheelhouse):
    commit = "58e472e076a5d861fdcf773d9254a3664e045bf8"
    env = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", {"pip": [f"detectron2 @ git+https://github.com/facebookresearch/detectron2.git@{commit}"]}])
    plan = env_twins.make_plan(env, wheelhouse)
    assert plan.pip_lines == [f"detectron2 @ {(wheelhouse.root / 'wheels' / 'cp39-torch1.12.1' / 'detectron2-0.6-cp39-cp39-linux_x86_64.whl').as_uri()}"]
    assert plan.expected_present == ["detectron2"]


def test_without_a_matching_wheel_the_source_archive_of_exactly_that_commit(tmp_path, wheelhouse):
    commit = "58e472e076a5d861fdcf773d9254a3664e045bf8"
    env = _env(tmp_path, ["python=3.9", "pytorch=1.13.1", {"pip": [f"detectron2 @ git+https://github.com/facebookresearch/detectron2.git@{commit}"]}])
    plan = env_twins.make_plan(env, wheelhouse)  # no cp39-torch1.13.1 wheels
    assert plan.pip_lines == [f"detectron2 @ {(wheelhouse.root / 'sources' / f'detectron2-{commit}.tar.gz').as_uri()}"]
    wrong = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", {"pip": ["detectron2 @ git+https://github.com/facebookresearch/detectron2.git@abcdef1234"]}], "wrong")
    with pytest.raises(env_twins.TwinError, match="no source archive of that commit"):
        env_twins.make_plan(wrong, wheelhouse)


def test_a_wheel_built_from_another_commit_is_not_used(tmp_path, wheelhouse):
    commit = "96c752ce821a3340e27edd51c28a00665dd32a30"
    env = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", {"pip": [f"detectron2 @ git+https://github.com/facebookresearch/detectron2.git@{commit}"]}])
    assert env_twins.make_plan(env, wheelhouse).pip_lines[0].endswith(f"detectron2-{commit}.tar.gz")


def test_openmmlab_find_links_become_the_wheelhouse_folder_of_the_envs_python_and_torch(tmp_path, wheelhouse):
    env = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", {"pip": ["--find-links https://download.openmmlab.com/mmcv/dist/cu113/torch1.12/index.html", "mmcv-full==1.7.1"]}])
    plan = env_twins.make_plan(env, wheelhouse)
    assert plan.pip_lines == [f"--find-links {wheelhouse.root / 'wheels' / 'cp39-torch1.12.1'}", "mmcv-full==1.7.1"]
    other_torch = _env(tmp_path, ["python=3.9", "pytorch=1.9.0", {"pip": ["--find-links https://download.openmmlab.com/mmcv/dist/cu111/torch1.9.0/index.html"]}], "other")
    with pytest.raises(env_twins.TwinError, match="cp39-torch1.9.0"):
        env_twins.make_plan(other_torch, wheelhouse)


def test_unmirrored_mmdetection_is_the_last_2x_release_and_said_so(tmp_path, wheelhouse):
    env = _env(tmp_path, ["python=3.9", {"pip": ["mmdet @ git+https://github.com/open-mmlab/mmdetection.git@b95583270c"]}])
    plan = env_twins.make_plan(env, wheelhouse)
    assert plan.pip_lines == ["mmdet==2.28.2"] and plan.expected["mmdet"] == "2.28.2"
    assert any("mmdet==2.28.2" in line and "2.x" in line for line in plan.substitutions)


def test_a_source_requiring_github_projects_by_url_is_installed_without_deps(tmp_path, wheelhouse):
    """pip would clone the URLs its setup.py requires: they are mapped to the wheelhouse, its other
    requirements go into the pip step, and it is installed last with --no-deps (nested, as DensePose)."""
    env = _env(tmp_path, ["python=3.9", "pytorch=1.12.1", {"pip": ["app @ git+https://github.com/someone/app.git@0123456789abcdef0123456789abcdef01234567"]}])
    plan = env_twins.make_plan(env, wheelhouse)
    sources = wheelhouse.root / "sources"
    assert plan.no_deps == [
        (sources / "detectron2-96c752ce821a3340e27edd51c28a00665dd32a30.tar.gz").as_uri() + "#subdirectory=projects/DensePose",
        (sources / "app-0123456789abcdef0123456789abcdef01234567.tar.gz").as_uri(),
    ]
    assert "numpy>=1.20" in plan.pip_lines and "imageio==2.4.1" in plan.pip_lines and "av>=8.0.3" in plan.pip_lines
    assert f"tool @ {(sources / 'tool-89abcdef0123456789abcdef0123456789abcdef.tar.gz').as_uri()}" in plan.pip_lines  # unpinned: the only archive
    assert any(line.startswith("detectron2 @ ") and line.endswith("detectron2-0.6-cp39-cp39-linux_x86_64.whl") for line in plan.pip_lines)
    last = env_twins.pip_commands(plan, "py")[-1]
    assert last[-4:] == ["--no-deps", "--no-build-isolation", *plan.no_deps]


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_every_env_file_translates_and_its_twin_pins_exactly_the_env_files_versions(env):
    """One source of truth: each pin of the env file is a pin of its twin (same version), or a
    conda-only package left out with a reason, or a GitHub source taken from the wheelhouse."""
    from test_envs import env_dependencies

    wheelhouse = env_twins.find_wheelhouse()
    if wheelhouse is None and "git+" in env.read_text():
        pytest.skip("wheelhouse missing: the env's GitHub sources cannot be mapped")
    plan = env_twins.make_plan(env, env_twins.Wheelhouse(wheelhouse) if wheelhouse else None)
    for name, version in env_dependencies(env).items():
        pypi = env_twins.normalize(env_twins.CONDA_TO_PYPI.get(name, name))
        if name == "python":
            assert plan.python == ".".join(version.split(".")[:2])
        elif name in env_twins.CONDA_ONLY:
            assert f"{name}={version}" in plan.dropped
        elif re.fullmatch(r"[0-9a-f]{10,40}", version):
            assert pypi in plan.expected_present or any(pypi in line for line in plan.substitutions), name
        else:
            assert plan.expected[pypi] == version, name


def test_the_cache_key_is_the_env_files_content_and_the_translation_version(tmp_path, monkeypatch):
    env = _env(tmp_path, ["python=3.11", "numpy=2.4.6"])
    first = env_twins.env_digest(env)
    assert env_twins.env_digest(env) == first
    monkeypatch.setattr(env_twins, "TRANSLATION_VERSION", "changed")
    assert env_twins.env_digest(env) != first
    monkeypatch.undo()
    env.write_text(env.read_text() + "# a comment\n")
    assert env_twins.env_digest(env) != first
    monkeypatch.setenv("ANONYMIZATION_IMPACT_ENV_CACHE", str(tmp_path / "cache"))
    plan = env_twins.make_plan(env, None)
    assert env_twins.twin_path(plan) == tmp_path / "cache" / f"x-{plan.digest[:12]}"


def test_drift_names_every_package_whose_version_differs():
    plan = env_twins.Plan(env="x", env_file="x.yaml", digest="0", python="3.9", torch=None, pip_version=None, expected={"numpy": "1.23.5", "pillow": "9.4.0"}, expected_present=["detectron2"])
    assert env_twins.drift(plan, {"numpy": "1.23.5", "pillow": "9.4.0", "detectron2": "0.6"}) == []
    assert env_twins.drift(plan, {"numpy": "1.24.0"}) == ["numpy: pinned 1.23.5, installed 1.24.0", "pillow: pinned 9.4.0, not installed", "detectron2: from GitHub, not installed"]


def test_check_says_what_is_missing_in_one_line_each_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(env_twins, "REPO", tmp_path)
    monkeypatch.delenv("ANONYMIZATION_IMPACT_WHEELHOUSE", raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path))
    env = _env(tmp_path, ["python=3.7"])
    assert env_twins.main(["check", str(env)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("skip: ") for line in lines)
    assert "wheelhouse" in lines[0] and "Python 3.7" in lines[1]


def test_a_twin_is_built_once_atomically_then_reused(tmp_path, monkeypatch):
    """Builds a twin of an env with nothing to install (a plain venv: seconds), then reuses it."""
    if env_twins.find_python("3.11") is None:
        pytest.skip("Python 3.11 missing: pyenv install 3.11")
    monkeypatch.setenv("ANONYMIZATION_IMPACT_ENV_CACHE", str(tmp_path / "cache"))
    env = _env(tmp_path, ["python=3.11"], "bare")
    path = env_twins.build(env, quiet=True)
    marker = json.loads((path / env_twins.MARKER).read_text())
    assert marker["sha256"] == env_twins.env_digest(env) and marker["translation_version"] == env_twins.TRANSLATION_VERSION
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no leftover building folder
    assert str(path) in (path / "pyvenv.cfg").read_text() or "building" not in (path / "pyvenv.cfg").read_text()
    for script in (path / "bin").iterdir():
        if script.is_file() and not script.is_symlink() and script.stat().st_size < 1 << 20:
            assert b".building-" not in script.read_bytes(), script.name  # relocated to the final folder
    out = subprocess.run([str(path / "bin" / "pip"), "--version"], capture_output=True, text=True, check=True).stdout
    assert str(path) in out
    (path / "reused").write_text("")
    assert env_twins.build(env, quiet=True) == path and (path / "reused").exists()


def test_gc_finds_twins_of_changed_env_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONYMIZATION_IMPACT_ENV_CACHE", str(tmp_path / "cache"))
    env = _env(tmp_path, ["python=3.11"], "bare")
    current = tmp_path / "cache" / f"bare-{env_twins.env_digest(env)[:12]}"
    old = tmp_path / "cache" / "bare-0123456789ab"
    other = tmp_path / "cache" / "other-0123456789ab"
    for folder in (current, old, other):
        folder.mkdir(parents=True)
    assert env_twins.stale([env]) == [old]


# --------------------------------------------------------------------------- the stacks, for real

# What each env's framework must do (import, and a little more where cheap).
FRAMEWORK_SMOKE = {
    "anonymize": "import numpy, PIL, scipy, skimage, tqdm, pycocotools, cityscapesscripts, torch",
    "data": "import numpy, PIL, scipy, yaml, jsonschema, tqdm, pycocotools, cityscapesscripts",
    "figures": "import matplotlib, numpy, yaml, jsonschema, PIL, scipy, pycocotools; import matplotlib.pyplot",
    "training": "import torch, torchvision, pycocotools; torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)",
    "detectron2": (
        "import detectron2; from detectron2 import model_zoo; from detectron2.modeling import build_model\n"
        "cfg = model_zoo.get_config('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml'); cfg.MODEL.DEVICE = 'cpu'\n"
        "assert sum(p.numel() for p in build_model(cfg).parameters()) > 40e6"
    ),
    "detectron2-current": (
        "import detectron2; from detectron2 import model_zoo; from detectron2.modeling import build_model\n"
        "cfg = model_zoo.get_config('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml'); cfg.MODEL.DEVICE = 'cpu'\n"
        "assert sum(p.numel() for p in build_model(cfg).parameters()) > 40e6"
    ),
    "mmdetection": (
        "import torch, mmcv, mmdet; from mmcv.ops import RoIAlign, nms; import mmdet.apis\n"
        "assert RoIAlign((7, 7), 1.0, 0)(torch.rand(1, 1, 16, 16), torch.tensor([[0.0, 0.0, 0.0, 8.0, 8.0]])).shape == (1, 1, 7, 7)"
    ),
    "mmdetection-current": (
        "import torch, mmengine, mmcv, mmdet; from mmcv.ops import RoIAlign, nms; import mmdet.apis\n"
        "assert RoIAlign((7, 7), 1.0, 0)(torch.rand(1, 1, 16, 16), torch.tensor([[0.0, 0.0, 0.0, 8.0, 8.0]])).shape == (1, 1, 7, 7)"
    ),
    "deepprivacy2": "import dp2, tops, densepose, clip, detectron2; from detectron2 import model_zoo; import dp2.detection, dp2.generator",
    "detectors": (
        "import os, torch, mmcv, mmpose, face_detection; from mmcv.ops import RoIAlign; from mmpose.apis import init_pose_model, inference_top_down_pose_model\n"
        "assert os.path.isdir(os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'configs')), 'mmpose without .mim/configs'"
    ),
}


def test_every_env_has_a_framework_smoke_test():
    assert set(FRAMEWORK_SMOKE) == {env.stem for env in ENV_FILES}


def package_modules() -> dict[str, set[str]]:
    """env stem -> the anonymization_impact modules that the scripts of its rules import (and the
    training backend modules each backend env serves)."""
    import ast

    from test_envs import BACKEND_MODULES, BLOCKS, STACK_MODULES, conda_envs, rule_script

    from anonymization_impact.training import BACKEND_ENVS

    found: dict[str, set[str]] = {env.stem: set() for env in ENV_FILES}
    for block in BLOCKS.values():
        script = rule_script(block)
        if not script:
            continue
        tree = ast.parse((REPO / "rules" / script).resolve().read_text())
        modules = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "anonymization_impact":
                for alias in node.names:
                    dotted = f"{node.module}.{alias.name}"
                    is_module = (REPO / "scripts" / Path(*dotted.split("."))).with_suffix(".py").is_file() or (REPO / "scripts" / Path(*dotted.split("."))).is_dir()
                    modules.add(dotted if is_module else node.module)
        for env in conda_envs(block):
            found[Path(env).stem] |= modules
    for backend, stacks in BACKEND_ENVS.items():
        for stack, env in stacks.items():
            for module in BACKEND_MODULES[backend] - STACK_MODULES.get((backend, stack), set()):
                dotted = module[: -len(".py")].replace("/", ".").removesuffix(".__init__")  # mmdetection/v2.py -> mmdetection.v2
                found[Path(env).stem].add(f"anonymization_impact.training.{dotted}")
    found["deepprivacy2"].add("anonymization_impact.realistic.deepprivacy2")
    return found


@pytest.mark.stacks
@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.stem)
def test_twin_has_the_env_files_versions_and_runs_its_framework_and_package(env, stacks_machine, extra_paths):
    """The twin (built unless cached) has exactly the env file's pins, its framework imports and
    does a little work, and the package modules its rules import import there."""
    twin = _twin(env)
    python = twin / "bin" / "python"
    plan = env_twins.make_plan(env, env_twins.Wheelhouse(env_twins.find_wheelhouse()))
    assert env_twins.python_minor(python) == plan.python
    assert env_twins.drift(plan, env_twins.installed_versions(python)) == [], "versions differ from the env file"

    result = _run(python, FRAMEWORK_SMOKE[env.stem], extra_paths.get(env.stem, ()))
    assert result.returncode == 0, "framework smoke test failed:\n" + result.stderr[-4000:]

    failures = {}
    for module in sorted(package_modules()[env.stem]):
        result = _run(python, f"import {module}", extra_paths.get(env.stem, ()))
        if result.returncode:
            failures[module] = result.stderr.strip().splitlines()[-1]
    assert not failures, "package modules do not import:\n" + "\n".join(f"{module}: {error}" for module, error in failures.items())


def test_without_a_wheelhouse_a_users_machine_fetches_the_pinned_commits_from_github():
    """A site building the twins for real (no test mirror): pip clones the pinned commits and reads
    OpenMMLab's index, as the env file says; no stand-in replaces a commit it can fetch."""
    mmdet = env_twins.make_plan(REPO / "envs" / "mmdetection.yaml", None)
    assert "mmdet @ git+https://github.com/open-mmlab/mmdetection.git@b95583270c" in mmdet.pip_lines
    assert any(line.startswith("--find-links https://download.openmmlab.com/") for line in mmdet.pip_lines)
    detectron2 = env_twins.make_plan(REPO / "envs" / "detectron2.yaml", None)
    assert [line for line in detectron2.pip_lines if line.startswith("detectron2 @ ")] == [
        "detectron2 @ git+https://github.com/facebookresearch/detectron2.git@58e472e076a5d861fdcf773d9254a3664e045bf8"
    ]
