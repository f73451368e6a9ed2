"""The GKE stand-in's pieces shared by tests/system/test_gke_workflow.py and benchmarks/storage_ops.py: a workdir as
a user has one, the pods' environment (what the image provides), and the bucket's name in the profile's terms.

Pods run as local processes of the Kubernetes stand-in (:mod:`.kube_emulator`); files move only through the real
GCS storage plugin, talking to the Cloud Storage stand-in (:mod:`.gcs_emulator`).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import yaml

from . import ROOT
from .gcs_emulator import GcsEmulator

BIN = Path(sys.executable).parent
PROFILE = ROOT / "profiles" / "gke"
HEADER = "sample\timage\tkind\tnuclear_channel\tmembrane_channel\tchannel_names\tpixel_size_um\n"
BUCKET = "cellscale-test"
ENV = {"CELLSCALE_GCP_PROJECT": "demo-project", "CELLSCALE_BUCKET": BUCKET}  # the profile's gs://BUCKET/cellscale


def wheel_of_installed(dist_name: str, out: Path) -> Path:
    """Repack an installed pure-Python distribution as a wheel: the image's /opt/wheels, offline."""
    dist = distribution(dist_name)
    wheel = out / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    record_name = next(f for f in dist.files if f.name == "RECORD")
    records = []
    with zipfile.ZipFile(wheel, "w") as z:
        for f in dist.files:
            src = Path(dist.locate_file(f))
            if f == record_name or "__pycache__" in f.parts or str(f).startswith("..") or not src.is_file():
                continue
            data = src.read_bytes()
            z.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{f},sha256={digest},{len(data)}")
        z.writestr(str(record_name), "\n".join(records + [f"{record_name},,"]) + "\n")
    return wheel


def write_workdir(work: Path, samples: str, header: str = HEADER, **config_updates) -> None:
    """A checkout as a user has one: the workflow's sources and config, tracked by git (Snakemake deploys the
    tracked files to the pods), with relative paths in the sample sheet (``samples``: its rows) and config
    (the shipped one, updated with ``config_updates``)."""
    for folder in ("workflow", "rules", "scripts", "envs"):
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "config/prices", work / "config/prices")  # the rule cost's price table
    shutil.copytree(PROFILE, work / "profiles/gke")  # and where it places each rule (config cost.placement_profile)
    (work / "config/samples.tsv").write_text(header + samples)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.update(samples="config/samples.tsv", models={"nuclear": "models/nuclear", "tissue": "models/tissue"})
    for key, value in config_updates.items():
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    git_track(work)


def git_track(work: Path) -> None:
    quiet = {"capture_output": True, "check": True, "cwd": work}
    subprocess.run(["git", "init", "-q"], **quiet)
    subprocess.run(["git", "add", "-A"], **quiet)


def pod_env(base: Path, storage: GcsEmulator) -> dict[str, str]:
    """What the image provides (Dockerfile): the project, snakemake, the storage plugins' wheels for the pods' pip
    step; and the bucket: on GKE the pods reach Cloud Storage through Workload Identity, here the emulator, each pod
    counted apart (the kube emulator puts the pod's name for {pod})."""
    wheels = base / "wheels"
    wheels.mkdir(exist_ok=True)
    for dist in ("snakemake-storage-plugin-fs", "snakemake-storage-plugin-gcs"):
        wheel_of_installed(dist, wheels)
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(base / "home"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2",
            "PIP_NO_INDEX": "1", "PIP_NO_DEPS": "1", "PIP_FIND_LINKS": str(wheels),
            "STORAGE_EMULATOR_HOST": storage.endpoint("{pod}")}
