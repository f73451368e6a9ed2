"""The model registry: every model folder with its version, the dataset version it was trained on, its held-out
metrics, command, date and the model it was fine-tuned from.

A model's version is the first 12 hex digits of the SHA-256 of its weights (``model.keras``, or the artifact its
``model.json`` names; a tracking scorer's ``trees.npz``): the same weights are the same version wherever the folder
lies. A model is a segmentation network (a folder with ``model.json``) or the tracker's learned scorer (a folder
with ``scorer.json``, :mod:`cellscale.track.scorer`); :attr:`ModelEntry.kind` says which. The registry lists the
shipped models (:func:`cellscale.segment.model.shipped_models_dir`) and the folders named in the registry file
(``data/versions/models.json`` of the checkout, ``$CELLSCALE_REGISTRY`` overrides it; ``cellscale models add
FOLDER`` writes it). The config may name a model ``NAME@VERSION`` (or ``NAME@latest``): :func:`resolve_model`
turns that into its folder. ``cellscale models list|show|add`` is the command line.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cellscale.datasets import default_store, is_ref, sha256_of
from cellscale.segment.model import ModelSpec, artifact_path, shipped_models_dir

REGISTRY_ENV = "CELLSCALE_REGISTRY"
VERSION_LENGTH = 12
#: the file that makes a folder a model of each kind, and the kind's weights when model.json names none
KIND_FILES = {"segmentation": "model.json", "tracking": "scorer.json"}
SCORER_WEIGHTS = "trees.npz"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model folder (see the module docstring)."""

    name: str
    version: str
    path: str
    dataset: str | None
    codex_dataset: str | None
    metrics: dict
    command: str | None
    trained: str | None
    fine_tuned_from: dict | None
    card_sha256: str | None
    kind: str = "segmentation"

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def data(self) -> str | None:
        """Every dataset version it was trained on: ``NAME@ID``, ``+ codex@ID`` where the CODEX tile was too."""
        return " + ".join(d for d in (self.dataset, self.codex_dataset) if d) or None

    @property
    def parent(self) -> str:
        """The model it was fine-tuned from, ``NAME@VERSION``; for a model trained before parents were recorded, its
        command's ``--init-from`` folder, marked so (its weights then are not known); ``-`` if none."""
        if (self.fine_tuned_from or {}).get("model"):
            return self.fine_tuned_from["model"]
        init = re.search(r"--init-from (\S+)", self.command or "")
        return f"{init.group(1)} (version not recorded)" if init else "-"

    def headline(self) -> str:
        """The held-out scores in one line (a tracking scorer: what it is and was trained on; its card has the
        held-out figures)."""
        if self.kind == "tracking":
            return scorer_headline(json.loads((Path(self.path) / KIND_FILES["tracking"]).read_text()))
        return headline(self.metrics)

    def to_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref, "parent": self.parent}


def headline(test: dict) -> str:
    """A one-line summary of a ``metrics.json`` ``test`` record (nuclear or tissue)."""
    parts = []
    codex = "codex_held_out" in test
    for key, res in test.items():
        if key == "codex_held_out":
            # the float32 figure, as the other figures of the line (and the cards' and README's) are
            ours, how = res.get("cellscale"), "float32"
            if not ours and res.get("cellscale int8 + rot180 (workflow default)"):
                ours, how = res["cellscale int8 + rot180 (workflow default)"], "int8 + rot180"
            if ours:
                parts.append(f"CODEX held-out F1 {ours[0]:.3f} / {ours[1]:.3f} (expert 1 / 2, {how})")
        elif key == "whole_cell" and codex and isinstance(res, dict) and "model" in res:
            # a model trained with --codex ships whole-cell settings tuned on the tile: its generated-tissue row
            # with the settings tuned on generated tissue is not the shipped model's
            if res.get("shipped"):
                parts.append(f"whole_cell F1 {res['shipped']['f1']:.3f} AP {res['shipped']['ap']:.3f}")
            else:
                parts.append(f"whole_cell F1 {res['model']['f1']:.3f} AP {res['model']['ap']:.3f} (settings tuned "
                             "on generated tissue, not the shipped ones)")
        elif isinstance(res, dict) and "model" in res and (key == "all" or "baseline" not in res or
                                                           key in ("nuclear", "whole_cell")):
            parts.append(f"{key} F1 {res['model']['f1']:.3f} AP {res['model']['ap']:.3f}")
    return "; ".join(parts)


def scorer_headline(meta: dict) -> str:
    """A tracking scorer's ``scorer.json`` in one line: its trees and the movies it was trained on."""
    movies = meta.get("trained_on") or []
    ctc = sum("ctc" in m for m in movies)
    return (f"tracking links and divisions: {meta.get('max_iter', '?')} trees each, "
            f"depth {meta.get('max_depth', '?')}; "
            f"trained on {len(movies) - ctc} generated movie(s){f' + {ctc} CTC sequence(s)' if ctc else ''} "
            f"({meta.get('n_link_rows', '?')} link, {meta.get('n_division_rows', '?')} division candidates); "
            "held-out figures: its MODEL_CARD.md")


def model_kind(folder: str | os.PathLike) -> str | None:
    """``segmentation`` or ``tracking`` (see :data:`KIND_FILES`); None for a folder that is neither."""
    return next((kind for kind, name in KIND_FILES.items() if (Path(folder) / name).is_file()), None)


def weights_version(folder: str | os.PathLike) -> str:
    """A model folder's version: the SHA-256 (first 12 hex) of its network file (a tracking scorer's trees)."""
    folder = Path(folder)
    if model_kind(folder) == "tracking":
        return sha256_of(folder / SCORER_WEIGHTS)[:VERSION_LENGTH]
    path = artifact_path(folder, ModelSpec.read(folder).artifact)
    if path.is_dir():  # a SavedModel: every file, in order
        import hashlib

        digest = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            digest.update(p.relative_to(path).as_posix().encode())
            digest.update(sha256_of(p).encode())
        return digest.hexdigest()[:VERSION_LENGTH]
    return sha256_of(path)[:VERSION_LENGTH]


def model_entry(folder: str | os.PathLike, name: str | None = None) -> ModelEntry:
    """The registry's record of one model folder (its name: the folder's)."""
    folder = Path(folder)
    kind = model_kind(folder) or "segmentation"
    record = {}
    # a segmentation model's record is its metrics.json; a scorer's, its scorer.json (no held-out metrics there)
    facts = folder / ("metrics.json" if kind == "segmentation" else KIND_FILES[kind])
    if facts.is_file():
        record = json.loads(facts.read_text())
    card = folder / "MODEL_CARD.md"
    return ModelEntry(name=name or folder.name, version=weights_version(folder), path=str(folder),
                      dataset=record.get("dataset"), codex_dataset=record.get("codex_dataset"),
                      metrics=record.get("test", {}), command=record.get("command"),
                      trained=record.get("trained"), fine_tuned_from=record.get("fine_tuned_from"),
                      card_sha256=sha256_of(card) if card.is_file() else None, kind=kind)


def registry_file() -> Path:
    """``$CELLSCALE_REGISTRY``, else ``models.json`` next to the dataset versions."""
    return Path(os.environ[REGISTRY_ENV]) if os.environ.get(REGISTRY_ENV) else default_store() / "models.json"


def _registered(path: Path) -> list[dict]:
    return json.loads(path.read_text())["models"] if path.is_file() else []


def register_model(folder: str | os.PathLike, registry: str | os.PathLike | None = None) -> ModelEntry:
    """Add a model folder outside the shipped ones to the registry file (idempotent); returns its entry."""
    path = Path(registry) if registry else registry_file()
    entry = model_entry(folder)
    rows = [r for r in _registered(path) if Path(r["path"]).resolve() != Path(folder).resolve()]
    rows.append({"path": str(Path(folder).resolve()), "name": entry.name, "version": entry.version,
                 "added": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"models": rows}, indent=1, sort_keys=True) + "\n")
    return entry


def list_models(registry: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
                ) -> list[ModelEntry]:
    """Every shipped model folder (segmentation networks and the tracking scorer) and every registered one (a
    registered folder that is gone is left out)."""
    root = Path(models_dir) if models_dir else shipped_models_dir()
    folders = sorted(p for p in root.iterdir() if model_kind(p)) if root.is_dir() else []
    seen = {f.resolve() for f in folders}
    for row in _registered(Path(registry) if registry else registry_file()):
        folder = Path(row["path"])
        if model_kind(folder) and folder.resolve() not in seen:
            folders.append(folder)
            seen.add(folder.resolve())
    return [model_entry(f) for f in folders]


def is_model_ref(value) -> bool:
    """A config value naming a registry model (``NAME@VERSION``), not a folder or a declared model (a dataset
    version's ``NAME@ID`` is told the same way: :func:`cellscale.datasets.is_ref`)."""
    return isinstance(value, str) and is_ref(value)


def find_model(ref: str, registry=None, models_dir=None, kind: str | None = None) -> ModelEntry:
    """The model ``NAME@VERSION`` (a version prefix is enough), ``NAME@latest`` or ``NAME`` (the shipped one, else
    the latest trained); an error naming the model and the versions there are when there is no such one, or when
    ``kind`` (``segmentation``, ``tracking``; None: either) is given and it is a model of another kind."""
    name, _, version = ref.partition("@")
    listed = list_models(registry, models_dir)
    entries = [e for e in listed if e.name == name and kind in (None, e.kind)]
    if not entries:
        other = sorted({e.kind for e in listed if e.name == name})
        if other:
            raise FileNotFoundError(f"model {name!r} is a {' and '.join(other)} model, not a {kind} model")
        known = sorted({e.name for e in listed if kind in (None, e.kind)})
        raise FileNotFoundError(f"no model {name!r} in the registry (models: {', '.join(known) or 'none'})")
    if not version:  # the shipped one: a registered folder of the same name does not change what NAME means
        shipped = (Path(models_dir) if models_dir else shipped_models_dir()).resolve()
        entries = [e for e in entries if Path(e.path).resolve().parent == shipped] or entries
    if not version or version == "latest":
        return max(entries, key=lambda e: e.trained or "")
    matches = [e for e in entries if e.version.startswith(version)]
    # the same weights in two folders are one version (the first listed: the shipped, else the first registered)
    if len({e.version for e in matches}) != 1:
        how = "is ambiguous" if matches else "is not in the registry"
        raise FileNotFoundError(f"model {name}@{version} {how} (versions of {name}: "
                                f"{', '.join(dict.fromkeys(e.version for e in entries))})")
    return matches[0]


def model_path(value: str | os.PathLike, named: str | None = None) -> Path:
    """A command's model argument (``--model``, ``--init-from``, :func:`cellscale.api.load_model`'s ``model``): a
    folder or file that exists, else a registry name ``NAME[@VERSION]`` (its folder); a FileNotFoundError (saying
    which, and the models there are) when it is neither, starting with ``named``, how the caller names the value
    (``--model X``), where given."""
    path = Path(value)
    try:
        if path.exists():
            return path
        if "/" in str(value) or str(value).endswith(".keras"):
            raise FileNotFoundError("no such model folder or file")
        return Path(find_model(str(value), kind="segmentation").path)
    except FileNotFoundError as err:
        if named is None:
            raise
        raise FileNotFoundError(f"{named}: {err}") from None


def resolve_model(value, registry=None, models_dir=None):
    """A config ``models`` value as the workflow uses it: ``NAME@VERSION`` becomes its folder; a folder or a
    declared model (a mapping) is returned as it is."""
    return find_model(value, registry, models_dir, kind="segmentation").path if is_model_ref(value) else value


def model_ref(value) -> str | None:
    """``NAME@VERSION`` of a model folder (or of a registry name), for reports; None for a declared model."""
    if isinstance(value, dict):
        return None
    if is_model_ref(value):
        return find_model(value).ref
    folder = Path(value)
    return f"{folder.name}@{weights_version(folder)}" if (folder / "model.json").is_file() else None


def model_provenance(value) -> dict:
    """What the report says produced a result: ``{"model": NAME@VERSION, "dataset": NAME@ID}`` of a config
    ``models`` value (a folder or ``NAME@VERSION``); the dataset is ``NAME@ID + codex@ID`` for a model trained on
    the CODEX tile as well. None for what is not known (a declared model, a folder only in remote storage, a model
    trained before dataset versions)."""
    if isinstance(value, dict):
        return {"model": None, "dataset": None}
    folder = Path(find_model(value).path) if is_model_ref(value) else Path(value)
    if not (folder / "model.json").is_file():
        return {"model": None, "dataset": None}
    entry = model_entry(folder)
    return {"model": entry.ref, "dataset": entry.data}


__all__ = ["KIND_FILES", "ModelEntry", "find_model", "is_model_ref", "list_models", "model_entry", "model_kind",
           "model_path", "model_provenance", "model_ref", "register_model", "registry_file", "resolve_model",
           "scorer_headline", "weights_version"]
