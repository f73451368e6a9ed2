"""Writes that replace their target only on success, so a killed job never leaves a partial output."""

from __future__ import annotations

import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _stale_temporaries(path: Path, suffix: str = ".part") -> list[Path]:
    """What an earlier, killed attempt at writing ``path`` left beside it (``.NAME.XXXX.part``; ``suffix``
    ``.scratch``: :func:`scratch_dir`'s folders)."""
    return list(path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"))


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename onto it only on success.

    A job killed outright (SIGKILL, a preempted node) cannot clean up, so the
    temporary files an earlier attempt left for this same ``path`` are removed
    first: a rerun leaves only the result. A folder at ``path`` is an error before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name for the output")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a new temporary folder next to ``path``; on success it replaces ``path`` (a folder) whole.

    On failure the temporary folder is removed and ``path`` is left as it was. As in
    :func:`atomic_path`, what a killed earlier attempt left for the same ``path`` is removed first.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and (not path.is_dir() or path.is_symlink()):
        raise ValueError(f"{path} exists and is not a directory")
    for stale in _stale_temporaries(path):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders: others on a shared disk could not read it
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", suffix=".part", dir=path.parent))
            old.rmdir()
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_dir(path: str | os.PathLike):
    """Yield a new temporary working folder next to ``path`` (``.NAME.XXXX.scratch``), removed when the block ends.

    For a job's intermediate files on the output's disk (a label image stitched chunk by chunk before it is written
    to ``path``). A job killed outright cannot remove it, so, as in :func:`atomic_path`, the folders an earlier
    attempt at the same ``path`` left are removed first: a rerun leaves only the result.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(path, ".scratch"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".scratch", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
