"""A dataset version: an immutable manifest of files (path, size, SHA-256, metadata) named by its content hash.

The manifest is JSON with sorted keys. Its id is the first :data:`ID_LENGTH` hex digits of the SHA-256 of the
canonical JSON of everything but ``created`` (and the id itself): the same name, root, files, metadata, parent and
changes give the same id on any machine, and one changed byte in one file gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ID_LENGTH = 12

#: The ontology: what a set (or one of its files) may say about its annotations. ``compartments``, ``source``
#: and ``licence`` are required for every file (on the set or on the file); the others are recorded when known.
ONTOLOGY = ("compartments", "organ", "tissue", "platform", "stain", "channels", "pixel_size_um", "source",
            "licence", "annotator")
REQUIRED = ("compartments", "source", "licence")
COMPARTMENTS = ("nuclear", "whole_cell", "cytoplasm")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def canonical(data: Any) -> str:
    """The canonical JSON text: sorted keys, no spaces, UTF-8 characters as they are."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: ``path`` (POSIX, relative to the version's root), ``size`` (bytes), ``sha256`` and
    ``metadata`` (what holds for this file only, e.g. ``{"sample": "a1", "role": "image", "split": "train"}``;
    it overrides the set's metadata key by key)."""

    path: str
    sha256: str
    size: int
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FileEntry:
        return cls(path=data["path"], sha256=data["sha256"], size=int(data["size"]),
                   metadata=dict(data.get("metadata") or {}))

    def __getitem__(self, key: str):  # entry["path"] as well as entry.path
        return self.to_dict()[key] if key in ("path", "sha256", "size") else self.metadata[key]


@dataclass(frozen=True)
class Manifest:
    """A dataset version (see the module docstring). Build one with :func:`cellscale.datasets.add_version`;
    ``base`` is the folder a relative ``root`` is resolved against (the checkout), not part of the content."""

    name: str
    root: str
    files: tuple[FileEntry, ...]
    metadata: dict
    parent: str | None = None
    changes: dict = field(default_factory=dict)
    created: str = ""
    base: Path = field(default=Path("."), compare=False, repr=False)

    def content(self) -> dict:
        """Everything the id is a hash of."""
        return {"name": self.name, "root": self.root, "files": [f.to_dict() for f in self.files],
                "metadata": self.metadata, "parent": self.parent, "changes": self.changes}

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical(self.content()).encode()).hexdigest()[:ID_LENGTH]

    @property
    def ref(self) -> str:
        """``NAME@ID``: how a model card, a config or ``--data`` names this version."""
        return f"{self.name}@{self.id}"

    def to_dict(self) -> dict:
        return {**self.content(), "id": self.id, "created": self.created}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict, base: str | os.PathLike = ".") -> Manifest:
        manifest = cls(name=data["name"], root=data["root"],
                       files=tuple(FileEntry.from_dict(f) for f in data["files"]), metadata=data.get("metadata", {}),
                       parent=data.get("parent"), changes=data.get("changes", {}), created=data.get("created", ""),
                       base=Path(base))
        if "id" in data and data["id"] != manifest.id:
            raise ValueError(f"dataset {data['name']}@{data['id']}: the manifest was edited (its content hashes to "
                             f"{manifest.id}); versions are immutable: add a new one")
        return manifest

    @property
    def root_path(self) -> Path:
        """The folder the files' paths are relative to (a relative root is resolved against ``base``)."""
        root = Path(self.root)
        return root if root.is_absolute() else Path(os.path.normpath(self.base / root))

    def abspath(self, entry: FileEntry | str) -> Path:
        """The file of ``entry`` (or of a relative path) on this machine; a clear error when the root is missing."""
        root = self.root_path
        if not root.is_dir():
            raise FileNotFoundError(missing_root_message(self))
        return root / (entry.path if isinstance(entry, FileEntry) else entry)

    @property
    def compartments(self) -> list[str]:
        """Every compartment the version annotates: the set's, the files' ``compartments`` and ``compartment``."""
        found = set(self.metadata.get("compartments") or [])
        for f in self.files:
            found.update(f.metadata.get("compartments") or [])
            if f.metadata.get("compartment"):
                found.add(f.metadata["compartment"])
        return sorted(found)

    def metadata_of(self, entry: FileEntry) -> dict:
        """The set's metadata with ``entry``'s own on top."""
        return {**self.metadata, **entry.metadata}

    def annotations(self) -> list[dict]:
        """Who drew the labels and where they come from: the label files grouped by their ``annotator`` and
        ``source`` (each file's own over the set's), largest group first, with ``generated``: whether all of a
        group's files are generated ones. A version with corrections on top of a generated parent has two groups."""
        groups: dict[tuple, dict] = {}
        for f in self.files:
            meta = self.metadata_of(f)
            if meta.get("role") != "labels":
                continue
            key = (str(meta.get("annotator") or "-"), str(meta.get("source") or "-"))
            group = groups.setdefault(key, {"annotator": key[0], "source": key[1], "files": 0, "generated": True})
            group["files"] += 1
            group["generated"] = group["generated"] and bool(meta.get("generated"))
        return sorted(groups.values(), key=lambda g: (-g["files"], g["annotator"], g["source"]))

    @staticmethod
    def annotation_text(group: dict) -> str:
        """One group of :meth:`annotations` in words: ``N label file(s) by ANNOTATOR (SOURCE)``."""
        return f"{group['files']} label file(s) by {group['annotator']} ({group['source']})"

    def entry(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.ref} has no file {path}")


def missing_root_message(manifest: Manifest) -> str:
    """Why a version's files cannot be read: its root is missing (and how to make it when it is generated)."""
    text = f"dataset {manifest.ref}: its root {manifest.root_path} (root {manifest.root!r}) is missing"
    generator = manifest.metadata.get("generator")
    if generator and generator.get("command"):
        text += f"; it is generated: `{generator['command']}` writes it"
    elif not Path(manifest.root).is_absolute():
        text += f" (relative roots are resolved against {manifest.base})"
    return text
