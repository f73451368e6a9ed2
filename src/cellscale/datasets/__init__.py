"""Dataset versions: immutable, content-hashed manifests of annotated files with their ontology metadata.

A version lists every file (path relative to its root, size, SHA-256, per-file metadata such as the sample, its
role and split) with the set's ontology (compartments annotated, organ/tissue, platform, stain and channels, pixel
size, source, licence, annotator), its parent version and what changed from it. Its id is a hash of that content
(:mod:`.manifest`); manifests are small JSON files committed under ``data/versions/<name>/`` (:mod:`.store`), and
the files stay where they are (``data/demo/...``, ``../shared/data/...``, a generated folder). Training names a
version (``cellscale train --data NAME@ID``) and the model card records it; ``cellscale data add|list|show|diff|
verify`` is the command line.

Why not DVC. DVC stores data by content hash too, but it tracks files *inside* the git repository, copies them into
its cache and wants a remote to share them; the data here is referenced where it lies (``../shared/data``, whose
CTC terms forbid copying into the project, and generated sets that are cheaper to regenerate than to store), and
DVC has no place for the ontology, the parent and the change log a version needs. A version here is the part of
DVC's ``.dvc`` file that matters (paths, sizes, hashes) plus that metadata; a team that wants remote storage can
``dvc add`` a root and keep these manifests on top, the hashes check the same bytes.

Public API: :func:`add_version`, :func:`load_version`, :func:`list_versions`, :func:`diff`, :func:`verify`,
:func:`select`, :class:`Manifest`, :class:`FileEntry`, :func:`default_store`.
"""

from cellscale.datasets.manifest import COMPARTMENTS, ONTOLOGY, REQUIRED, FileEntry, Manifest, sha256_of
from cellscale.datasets.store import (
    VERSIONS_ENV,
    add_version,
    default_store,
    diff,
    is_dataset,
    is_ref,
    known_datasets,
    lineage,
    list_files,
    list_versions,
    load_version,
    parse_ref,
    root_dir,
    select,
    store_base,
    verify,
)

__all__ = ["COMPARTMENTS", "ONTOLOGY", "REQUIRED", "VERSIONS_ENV", "FileEntry", "Manifest", "add_version",
           "default_store", "diff", "is_dataset", "is_ref", "known_datasets", "lineage", "list_files", "list_versions",
           "load_version", "parse_ref", "root_dir", "select", "sha256_of", "store_base", "verify"]
