"""The package installed from its wheel, not the checkout: the shipped models travel with it as package data.

The wheel is built from a copy of what a build reads (pyproject.toml, README.md, src/) and installed, without
dependencies, into a fresh virtual environment whose only other path is the project venv's site-packages (for
numpy, TensorFlow, ...). That venv's editable install of cellscale is a ``.pth`` line, which a path added by
another ``.pth`` file does not process: the checkout's src/ is not on the new environment's path at all.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from packaging.requirements import Requirement
from support import DEMO, ROOT

pytestmark = pytest.mark.install

SHIPPED = ROOT / "src" / "cellscale" / "models"  # the checkout's models/ links here


def _can_build_offline() -> bool:
    """Whether this interpreter has the build backend pyproject.toml asks for (then no download is needed)."""
    from importlib.metadata import PackageNotFoundError, version

    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]:
        req = Requirement(line)
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                return False
        except PackageNotFoundError:
            return False
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    mine = source / "src" / "cellscale" / "models" / "mine"  # a user's model trained into the checkout's models/
    mine.mkdir()
    (mine / "model.json").write_text("{}")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(tmp / "dist"), str(source)], check=True,
                   timeout=300)
    (wheel,) = (tmp / "dist").glob("cellscale-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}  # the project venv's: numpy, keras...
    (purelib / "_cellscale_test_deps.pth").write_text("".join(p + "\n" for p in sorted(deps)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CELLSCALE_MODELS", "VIRTUAL_ENV")}
    # without PYTHONPATH: a checkout's src/ on it (with the editable install's cellscale.egg-info) made pip see
    # cellscale installed already and skip the wheel
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300, env=env)

    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    work = tmp / "elsewhere"  # not the checkout: no models/ beside it
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "python": python, "site": purelib, "env": env, "cwd": work}


def test_wheel_carries_the_models_and_schemas(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for model in ("generalist", "nuclear", "tissue", "tissue-tight"):
        for name in ("model.json", "model.keras", "model.int8.tflite", "MODEL_CARD.md", "metrics.json"):
            assert f"cellscale/models/{model}/{name}" in names
    tracked = subprocess.run(["git", "ls-files", "src/cellscale/models"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked and {f"cellscale/models/{Path(p).relative_to(SHIPPED.relative_to(ROOT))}" for p in tracked} == {
        n for n in names if n.startswith("cellscale/models/")}  # every shipped model's file, and no other
    schemas = {p.name for p in (ROOT / "src" / "cellscale" / "schemas").glob("*.yaml")}
    assert schemas and all(f"cellscale/schemas/{name}" in names for name in schemas)
    for kind in ("prices", "throughput"):   # the price tables and throughput profiles cellscale plan reads
        shipped = {p.name for p in (ROOT / "config" / kind).glob("*.yaml")}
        assert shipped and all(f"cellscale/cost/tables/{kind}/{name}" in names for name in shipped)


def test_installed_package_finds_its_own_models(installed, tmp_path):
    code = (
        "import json, os, sys, cellscale\n"
        "from cellscale.segment.model import shipped_model\n"
        "found = {'package': cellscale.__file__, 'nuclear': str(shipped_model('nuclear')), 'path': sys.path}\n"
        "os.environ['CELLSCALE_MODELS'] = sys.argv[1]\n"
        "found['override'] = str(shipped_model('nuclear'))\n"
        "print(json.dumps(found))\n"
    )
    (tmp_path / "nuclear").symlink_to(SHIPPED / "nuclear")
    out = subprocess.run([str(installed["python"]), "-c", code, str(tmp_path)], cwd=installed["cwd"],
                         env=installed["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout)
    site = installed["site"]
    assert Path(found["package"]).is_relative_to(site / "cellscale")
    assert Path(found["nuclear"]) == site / "cellscale" / "models" / "nuclear"
    assert not any(Path(p).resolve().is_relative_to(ROOT / "src") for p in found["path"] if p), found["path"]
    assert found["override"] == str(tmp_path / "nuclear")  # CELLSCALE_MODELS: another folder of model folders
    # the installed copies are the shipped files
    for model in ("nuclear", "tissue", "tissue-tight"):
        names = [p.name for p in (SHIPPED / model).iterdir()]
        match, mismatch, errors = filecmp.cmpfiles(SHIPPED / model, site / "cellscale" / "models" / model, names,
                                                   shallow=False)
        assert not mismatch and not errors, (model, mismatch, errors)


def test_installed_command_segments_a_demo_image_from_another_folder(installed):
    image = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0]
    cli = installed["venv"] / "bin" / "cellscale"
    out = subprocess.run([str(cli), "segment", str(image), "-o", "labels.tif"], cwd=installed["cwd"],
                         env=installed["env"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    labels = tifffile.imread(installed["cwd"] / "labels.tif")
    assert labels.dtype == np.uint32 and labels.ndim == 2
    assert labels.max() > 5, out.stdout  # cells found


def test_installed_command_plans_from_another_folder(installed):
    """``cellscale plan`` outside a checkout (no config/ there) reads the shipped price table and profiles; a
    table of its own in the current folder's config/prices goes first."""
    cli = installed["venv"] / "bin" / "cellscale"
    args = [str(cli), "plan", "--images", "2000", "--deadline", "6", "--json"]
    out = subprocess.run(args, cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    shipped = json.loads(out.stdout)
    site = installed["site"] / "cellscale" / "cost" / "tables"
    assert Path(shipped["prices"]["path"]) == site / "prices" / "gke-us-central1.yaml"
    assert shipped["pools"] and shipped["cost_usd"] > 0
    own = installed["cwd"] / "config" / "prices"
    own.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "prices" / "gke-us-central1.yaml", own / "gke-us-central1.yaml")
    try:
        out = subprocess.run(args, cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True,
                             timeout=300)
    finally:
        shutil.rmtree(installed["cwd"] / "config")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["prices"]["path"] == "config/prices/gke-us-central1.yaml"
