"""The version store: ``<store>/<name>/<id>.json`` (one immutable manifest per version) and
``<store>/<name>/index.json`` (the versions in the order they were added; the last is ``latest``).

The default store is ``data/versions`` of the checkout (``$CELLSCALE_VERSIONS`` overrides it); a relative root
of a manifest is resolved against the folder holding the store's ``data/`` (the checkout), so committed manifests
name their files the same way on every clone.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cellscale.datasets.manifest import REQUIRED, FileEntry, Manifest, missing_root_message, sha256_of

VERSIONS_ENV = "CELLSCALE_VERSIONS"
DATASET_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a data set's name: a folder of the store, no path
CHECKOUT = Path(__file__).resolve().parents[3]  # src/cellscale/datasets/store.py -> the checkout


def default_store() -> Path:
    """``$CELLSCALE_VERSIONS``, else the checkout's ``data/versions`` (else ``./data/versions``)."""
    if os.environ.get(VERSIONS_ENV):
        return Path(os.environ[VERSIONS_ENV])
    if (CHECKOUT / "data" / "versions").is_dir():
        return CHECKOUT / "data" / "versions"
    return Path("data/versions").resolve()


def store_base(store: str | os.PathLike) -> Path:
    """The folder relative roots are resolved against: the one holding ``data/versions`` (else the store's
    parent)."""
    store = Path(store).resolve()
    return store.parents[1] if store.parent.name == "data" else store.parent


def _store(store) -> Path:
    return Path(store) if store is not None else default_store()


def _relative_root(root: str | os.PathLike, base: Path) -> str:
    """``root`` as written into the manifest: relative to ``base`` when it is a relative path or lies near it."""
    root = Path(root)
    if not root.is_absolute():
        return root.as_posix()
    rel = os.path.relpath(root.resolve(), base)
    return Path(rel).as_posix() if not rel.startswith("../../..") else root.as_posix()


def _root_dir(root_text: str, base: Path) -> Path:
    # normalised, not resolved by the OS: base/../x is found even before base (a new store's folder) exists
    return Path(root_text) if Path(root_text).is_absolute() else Path(os.path.normpath(base / root_text))


def root_dir(root: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """The folder :func:`add_version` records a version's files from: ``root`` itself when it is absolute, a relative
    one against the store's base (:func:`store_base`), not the current folder."""
    base = store_base(_store(store))
    return _root_dir(_relative_root(root, base), base)


def _listed(root: Path, files) -> list[dict]:
    """The files to record: ``None`` (every file under root but hidden ones), a glob pattern or a list of paths,
    patterns or ``{"path": ..., "metadata": {...}}`` entries."""
    if files is None:
        files = ["**/*"]
    elif isinstance(files, str):
        files = [files]
    out: dict[str, dict] = {}
    for item in files:
        if isinstance(item, Mapping):
            out[Path(item["path"]).as_posix()] = dict(item.get("metadata") or {})
            continue
        item = str(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(p for p in root.glob(item) if p.is_file()
                             and not any(part.startswith(".") for part in p.relative_to(root).parts))
            if not matches:
                raise FileNotFoundError(f"no file in {root} matches {item!r}")
            for p in matches:
                out.setdefault(p.relative_to(root).as_posix(), {})
        else:
            out.setdefault(Path(item).as_posix(), {})
    return [{"path": p, "metadata": m} for p, m in sorted(out.items())]


def list_files(root: str | os.PathLike, files=None) -> list[str]:
    """The paths under ``root`` that :func:`add_version` records for ``files`` (None: every file but hidden ones; a
    glob pattern; or a list of paths, patterns or ``{"path": ...}`` entries)."""
    return [item["path"] for item in _listed(Path(root), files)]


def add_version(name: str, root: str | os.PathLike, files=None, metadata: dict | None = None,
                parent: str | None = None, note: str = "", store: str | os.PathLike | None = None,
                file_metadata: Callable[[str], dict] | Mapping[str, dict] | None = None,
                inherit: bool = False, check: Callable[[Manifest], None] | None = None,
                drop: Iterable[str] = ()) -> Manifest:
    """Record a new version of data set ``name`` and return it (nothing is copied: files stay under ``root``).

    Parameters
    ----------
    root : folder the files' paths are relative to (:func:`root_dir`); a relative root is relative to the checkout
        (the store's base, :func:`store_base`), an absolute one inside or next to the checkout is stored relative to
        it.
    files : None (every file under ``root``), a glob pattern, or a list of paths, patterns or
        ``{"path": str, "metadata": dict}`` entries.
    metadata : the set's ontology (:data:`~cellscale.datasets.manifest.ONTOLOGY`: compartments, organ, platform,
        stain, channels, pixel_size_um, source, licence, annotator, ...) and anything else worth recording
        (``generator`` for generated sets).
    parent : ``NAME@ID`` (or ``NAME`` / ``NAME@latest``) of the version this one changes; ``changes`` records the
        files added, removed and modified against it, and ``note``.
    file_metadata : per-file metadata, a mapping from path or a function of the path, merged under each entry's own.
    inherit : start from the parent's files (re-rooted to ``root``) and its metadata (``metadata`` on top): the
        new version is the parent plus ``files`` (a file given again replaces the parent's).
    drop : with ``inherit``, paths of the parent's files (as the parent records them) left out of the new version
        (``changes`` lists them as removed): files that ``files`` supersede under other names.
    check : called with the new version before it is written (not when it is a stored one): its error leaves the
        store as it is (``cellscale data add --layout`` checks the training pairs this way).

    Adding a version whose id exists already is a no-op (the stored one is returned), and so is adding one that
    is a stored version but for the note, or its parent unchanged (that version or the parent is returned; a line
    on stderr says so; the index and ``latest`` stay as they are). A file missing under
    ``root`` or a file without compartments, source or licence is an error.
    """
    check_dataset_name(name)
    store = _store(store)
    base = store_base(store)
    parent_manifest = load_version(parent, store) if parent else None
    root_text = _relative_root(root, base)
    manifest_root = _root_dir(root_text, base)
    if not manifest_root.is_dir():
        where = "" if Path(root).is_absolute() else \
            f" (a relative root resolves against the store's base {base}, not the current folder)"
        raise FileNotFoundError(f"dataset {name}: root {manifest_root} is missing{where}")
    entries: dict[str, FileEntry] = {}
    meta = dict(metadata or {})
    if inherit and parent_manifest is not None:
        meta = {k: v for k, v in {**parent_manifest.metadata, **meta}.items() if v is not None}  # None: drop it
        drop = set(drop)
        for f in (f for f in parent_manifest.files if f.path not in drop):
            # where the parent's file is, whether or not it is on this machine (a generated set may not be)
            where = parent_manifest.root_path.resolve() / f.path
            path = Path(os.path.relpath(where, manifest_root.resolve())).as_posix()
            entries[path] = FileEntry(path, f.sha256, f.size, f.metadata)
    for item in _listed(manifest_root, files):
        path = item["path"]
        file = manifest_root / path
        if not file.is_file():
            raise FileNotFoundError(f"dataset {name}: {file} is missing")
        extra = (file_metadata(path) if callable(file_metadata) else (file_metadata or {}).get(path, {})) or {}
        entries[path] = FileEntry(path, sha256_of(file), file.stat().st_size, {**extra, **item["metadata"]})
    if not entries:
        raise ValueError(f"dataset {name}: no files under {manifest_root}")
    files_sorted = tuple(entries[p] for p in sorted(entries))
    for f in files_sorted:
        missing = [k for k in REQUIRED if k not in meta and k not in f.metadata]
        if missing:
            raise ValueError(f"dataset {name}: {f.path} has no {', '.join(missing)} (give them in the set's "
                             f"metadata or the file's)")
    draft = Manifest(name=name, root=root_text, files=files_sorted, metadata=meta,
                     parent=parent_manifest.ref if parent_manifest else None, base=base)
    changes = {**diff(parent_manifest, draft)["files"], "note": note} if parent_manifest else \
        {"added": [f.path for f in files_sorted], "removed": [], "modified": [], "note": note}
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = Manifest(name=name, root=root_text, files=files_sorted, metadata=meta, parent=draft.parent,
                        changes=changes, created=created, base=base)
    folder = store / name
    target = folder / f"{manifest.id}.json"
    if target.exists():  # immutable: the same content is the same version
        _say(f"{manifest.ref}: recorded already (the same files and metadata); no new version")
        return load_version(manifest.ref, store)
    same = _same_version(folder, manifest, parent_manifest, store)
    if same is not None:
        return same
    if check is not None:
        check(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, target)
    index = _index(folder)
    index["versions"].append({"id": manifest.id, "created": created, "parent": manifest.parent, "note": note})
    index["latest"] = manifest.id
    tmp = folder / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / "index.json")
    return manifest


def _say(text: str) -> None:
    print(f"cellscale data: {text}", file=sys.stderr)


def _sans_note(manifest: Manifest) -> dict:
    content = manifest.content()
    content["changes"] = {k: v for k, v in content["changes"].items() if k != "note"}
    return content


def _same_version(folder: Path, manifest: Manifest, parent: Manifest | None, store: Path) -> Manifest | None:
    """The stored version ``manifest`` is, though its id differs, or None (it is new):

    - its parent, when it changes nothing of it (the same root, files and metadata; an import of corrections
      imported before, a parent given again);
    - a version of the same name with the same content but for the note (the files of a generated set written
      again: the note is words about a version, not the version; the ids already given stay as they are).
    """
    def same(a: Manifest, b: Manifest) -> bool:
        return (a.name, a.root, a.files, a.metadata) == (b.name, b.root, b.files, b.metadata)

    if parent is not None and same(parent, manifest):
        _say(f"{manifest.name}: nothing changed relative to the parent {parent.ref} (the same root, files and "
             f"metadata); no new version: {parent.ref} is it")
        return parent
    wanted = _sans_note(manifest)
    for v in _index(folder)["versions"] if folder.is_dir() else []:
        stored = load_version(f"{manifest.name}@{v['id']}", store)
        if _sans_note(stored) == wanted:
            _say(f"{stored.ref} has these files and metadata already (only the note differs); no new version: "
                 f"{stored.ref} is it (its note stays)")
            return stored
    return None


def _index(folder: Path) -> dict:
    path = folder / "index.json"
    return json.loads(path.read_text()) if path.exists() else {"latest": None, "versions": []}


def check_dataset_name(name: str) -> None:
    """Refuse a dataset name that is no folder name of the store (``../x`` would reach outside it)."""
    if not re.fullmatch(DATASET_NAME, name):   # the store's folder NAME/: no '/', '..' or '@' (NAME@ID)
        raise ValueError(f"dataset name {name!r}: give letters, digits and _ . - only, starting with a letter or a "
                         f"digit (it names the store's folder {name!r} and versions NAME@ID)")


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@ID`` / ``NAME@latest`` / ``NAME`` -> (name, id or "latest")."""
    name, _, version = ref.partition("@")
    if not name:
        raise ValueError(f"{ref!r}: a dataset version is NAME@ID, NAME@latest or NAME")
    return name, version or "latest"


def is_ref(text: str) -> bool:
    """Whether ``text`` names a version (``NAME@...``) rather than a path or a keyword."""
    return "@" in text and "/" not in text.partition("@")[0]


def known_datasets(store: str | os.PathLike | None = None) -> list[str]:
    """The names of the data sets in the store (those with an index), alphabetically."""
    store = _store(store)
    return sorted(p.parent.name for p in store.glob("*/index.json")) if store.is_dir() else []


def is_dataset(name: str, store: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` (a bare word, no ``@``) is a data set of the store: ``--data NAME`` names its latest
    version."""
    return bool(name) and "@" not in name and "/" not in name and name in known_datasets(store)


def load_version(ref: str, store: str | os.PathLike | None = None) -> Manifest:
    """The version ``ref`` names (``NAME@ID``, an unambiguous prefix of the id, ``NAME@latest`` or ``NAME``);
    an error naming the versions there are when there is no such one."""
    store = _store(store)
    name, version = parse_ref(ref)
    check_dataset_name(name)
    folder = store / name
    if not folder.is_dir():
        known = sorted(p.name for p in store.iterdir() if p.is_dir()) if store.is_dir() else []
        raise FileNotFoundError(f"no dataset {name!r} in {store} (it has: {', '.join(known) or 'none'})")
    index = _index(folder)
    ids = [v["id"] for v in index["versions"]] or sorted(p.stem for p in folder.glob("*.json") if p.stem != "index")
    if version == "latest":
        version = index.get("latest") or (ids[-1] if ids else "")
    matches = [i for i in ids if i.startswith(version)] if version else []
    if len(matches) != 1:
        how = "is ambiguous" if matches else "does not exist"
        raise FileNotFoundError(f"dataset version {name}@{version} {how} (versions: {', '.join(ids) or 'none'})")
    path = folder / f"{matches[0]}.json"
    try:
        return Manifest.from_dict(json.loads(path.read_text()), base=store_base(store))
    except (ValueError, KeyError, TypeError) as err:  # edited by hand: not JSON, a key gone, or another id
        what = f"its {err} is missing" if isinstance(err, KeyError) else str(err)
        if "was edited" not in what:
            what += "; a manifest is never edited, versions are immutable: add a new one"
        raise ValueError(f"{path}: {what}; restore this one (e.g. `git checkout -- {path}`)") from None


def lineage(ref: str, store: str | os.PathLike | None = None) -> list[Manifest]:
    """The version ``ref`` names, then its parent, the parent's parent, ... as far as the store has them (a parent
    the store lacks ends the list; its ref is the last one's ``parent``)."""
    chain: list[Manifest] = []
    while ref and ref not in {m.ref for m in chain}:
        try:
            chain.append(load_version(ref, store))
        except FileNotFoundError:
            break
        ref = chain[-1].parent
    return chain


def list_versions(store: str | os.PathLike | None = None, name: str | None = None) -> list[dict]:
    """One row per version (name, id, created, parent, files, bytes, note, latest): by name (alphabetically),
    oldest first within a name (the order they were added)."""
    store = _store(store)
    if name is not None:
        check_dataset_name(name)
    rows = []
    folders = [store / name] if name else sorted(p for p in store.iterdir() if p.is_dir()) if store.is_dir() else []
    for folder in folders:
        try:
            index = _index(folder)
        except ValueError as err:  # a hand-edited index: its versions cannot be listed, the others can
            _say(f"warning: {folder / 'index.json'}: {err}; {folder.name}'s versions left out (restore the file, "
                 f"e.g. `git checkout -- {folder / 'index.json'}`)")
            continue
        for v in index["versions"]:
            try:
                m = load_version(f"{folder.name}@{v['id']}", store)
            except (ValueError, FileNotFoundError) as err:  # a broken manifest: named, and the rest listed
                _say(f"warning: {err}; left out of the list")
                continue
            rows.append({"name": m.name, "id": m.id, "created": m.created, "parent": m.parent,
                         "files": len(m.files), "bytes": sum(f.size for f in m.files),
                         # the index may annotate a version recorded without a note (its id stays)
                         "note": m.changes.get("note") or v.get("note") or "",
                         "latest": v["id"] == index.get("latest")})
    return rows


def diff(a: Manifest | None, b: Manifest) -> dict:
    """What changed from ``a`` to ``b``: ``{"files": {"added", "removed", "modified"}, "metadata": {key: [a, b]}}``
    (file paths sorted; a file is modified when its bytes or its own metadata differ). Versions with different
    roots are compared by where their files are: paths are ``ROOT/PATH``, normalised."""
    same_root = a is None or a.root == b.root

    def key(m: Manifest, f: FileEntry) -> str:  # roots differ: compare where the files are, ROOT/PATH
        return f.path if same_root else os.path.normpath(Path(m.root) / f.path).replace(os.sep, "/")

    old = {key(a, f): f for f in a.files} if a else {}
    new = {key(b, f): f for f in b.files}
    files = {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
             "modified": sorted(p for p in set(old) & set(new)
                                if (old[p].sha256, old[p].metadata) != (new[p].sha256, new[p].metadata))}
    meta_a = a.metadata if a else {}
    keys = sorted(set(meta_a) | set(b.metadata))
    metadata = {k: [meta_a.get(k), b.metadata.get(k)] for k in keys if meta_a.get(k) != b.metadata.get(k)}
    return {"from": a.ref if a else None, "to": b.ref, "files": files, "metadata": metadata}


def verify(manifest: Manifest, paths: Iterable[str] | None = None) -> list[str]:
    """Problems with ``manifest``'s files on this machine, one line each (empty: all there, sizes and SHA-256s
    recomputed and equal). ``paths`` checks only those files."""
    root = manifest.root_path
    if not root.is_dir():
        return [missing_root_message(manifest)]
    wanted = set(paths) if paths is not None else None
    problems, generated = [], []
    command = (manifest.metadata.get("generator") or {}).get("command")
    for f in manifest.files:
        if wanted is not None and f.path not in wanted:
            continue
        path = root / f.path
        if not path.is_file() and command and f.metadata.get("generated"):
            generated.append(path)  # a generated parent's files (e.g. under corrections): one line for them all
        elif not path.is_file():
            problems.append(f"{f.path}: missing ({path})")
        elif path.stat().st_size != f.size:
            problems.append(f"{f.path}: {path.stat().st_size} bytes, the manifest says {f.size}")
        elif sha256_of(path) != f.sha256:
            problems.append(f"{f.path}: SHA-256 differs from the manifest's (the file changed)")
    if generated:
        folder = os.path.commonpath([str(p.parent) for p in generated])
        problems.insert(0, f"{len(generated)} generated files missing (under {os.path.normpath(folder)}): they are "
                           f"generated: `{command}` writes them")
    return problems


def select(manifest: Manifest, pattern: str = "*", **metadata) -> list[FileEntry]:
    """The files whose path matches ``pattern`` and whose merged metadata has the given values."""
    return [f for f in manifest.files if fnmatch.fnmatch(f.path, pattern)
            and all(manifest.metadata_of(f).get(k) == v for k, v in metadata.items())]
