"""Test support: repository paths, ../shared data, a real single-node SLURM (:mod:`.slurm_cluster`), and where a GKE
cluster cannot run a Kubernetes API stand-in (:mod:`.kube_emulator`), a Cloud Storage one (:mod:`.gcs_emulator`)
and the pieces of a GKE run on them (:mod:`.gke_run`).

Tests import it as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cellscale.segment.model import shipped_models_dir

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
# the shipped models, or the folder of model folders CELLSCALE_MODELS names (e.g. while the shipped ones retrain):
# the command line's default models come from the same place
MODELS = shipped_models_dir()
DEMO = ROOT / "data" / "demo"


def need_shared(sub: str) -> Path:
    """Path of a folder of ../shared/data, or skip (a user's fresh clone has none)."""
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"{path} is absent (only developers and CI have ../shared)")
    return path


def rule_directive(rule: str, directive: str) -> str | None:
    """What a rule of rules/*.smk sets ``directive`` to (``threads``, ``priority``; one-line values), following
    ``use rule X as Y with:`` to the rule it is made from; None when it sets none."""
    for smk in (ROOT / "rules").glob("*.smk"):
        text = smk.read_text()
        match = re.search(rf"^(?:rule|checkpoint) {rule}:\n(.*?)(?=^\S|\Z)", text, re.S | re.M)
        derived = re.search(rf"^use rule (\w+) as {rule} with:\n(.*?)(?=^\S|\Z)", text, re.S | re.M)
        body = match.group(1) if match else derived.group(2) if derived else None
        if body is None:
            continue
        value = re.search(rf"^\s+{directive}: (\S+)", body, re.M)
        if value:
            return value.group(1)
        return rule_directive(derived.group(1), directive) if derived else None
    raise KeyError(f"no rule {rule} in rules/*.smk")
