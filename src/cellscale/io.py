"""Reading images and writing label images: the edges of the library.

Every image comes back as a (T, C, Y, X) array so the rest of the code never
guesses axes. Errors name the file and what is wrong with it.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".png", ".jpg", ".jpeg")
_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in a file name


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


def is_image_file(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(IMAGE_SUFFIXES)


def normalize_axes(axes: str, shape, path, timelapse: bool = False) -> str:
    """tifffile axis letters mapped onto "TCYX" letters (each at most once).

    A 3-D stack without axis metadata is channels, or time when ``timelapse``;
    colour samples (S) are channels; Z and unknown sequences (Q, I) are time.
    """
    axes = axes.upper()
    if len(shape) == 3 and axes in ("QYX", "IYX", "ZYX"):
        axes = "TYX" if timelapse else "CYX"
    axes = axes.replace("Q", "C").replace("I", "T").replace("Z", "T")
    if "S" in axes and "C" not in axes:
        axes = axes.replace("S", "C")
    for letter in axes:
        if letter not in "TCYX":
            raise ImageError(f"{path}: unsupported axis {letter!r} in {axes!r}")
    if len(set(axes)) != len(axes):
        raise ImageError(f"{path}: ambiguous axes {axes!r}")
    if "Y" not in axes or "X" not in axes:
        raise ImageError(f"{path}: image has no Y/X axes ({axes!r}, shape {tuple(shape)})")
    return axes


def _to_tcyx(data: np.ndarray, axes: str) -> np.ndarray:
    for letter in "TC":
        if letter not in axes:
            data = data[np.newaxis]
            axes = letter + axes
    return np.transpose(data, [axes.index(a) for a in "TCYX"])


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr group folder (OME-Zarr 0.4 on Zarr v2, or 0.5 on Zarr v3)."""
    path = Path(path)
    return path.is_dir() and ((path / ".zattrs").is_file() or (path / "zarr.json").is_file())


def ome_zarr_image(path: str | os.PathLike) -> tuple[object, list[str], dict]:
    """The full-resolution array of an OME-Zarr image, its axis names ("t", "c", "z", "y", "x") and
    its ``omero`` metadata (channel names); the array is read lazily, chunk by chunk."""
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:
        raise ImageError(f"{path}: cannot open as Zarr ({type(err).__name__}: {err})") from err
    attrs = attrs.get("ome", attrs)  # 0.5 nests the metadata under "ome"
    multiscales = attrs.get("multiscales")
    if not multiscales or not multiscales[0].get("datasets"):
        raise ImageError(f"{path}: a Zarr group without OME-Zarr 'multiscales' metadata (an OME-Zarr image "
                         f"is expected; a plate or a bare array is not supported)")
    level0 = multiscales[0]["datasets"][0]["path"]
    try:
        array = group[level0]
    except Exception as err:
        raise ImageError(f"{path}: multiscale level {level0!r} cannot be read ({type(err).__name__}: {err})") from err
    names = [a["name"] if isinstance(a, dict) else a for a in multiscales[0].get("axes", [])]
    names = [n.lower() for n in names] or list("tczyx"[-array.ndim:])
    if len(names) != array.ndim or not set(names) <= set("tczyx") or len(set(names)) != len(names):
        raise ImageError(f"{path}: axes {names} do not fit an array of shape {array.shape}")
    return array, names, attrs.get("omero") or {}


def numbered_frames(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The per-frame files of a folder (``t000.tif``, ``mask000.tif``, ``frame_12.png`` ...) in frame order.

    Files are ordered by the last number in their name; the numbers must be
    consecutive from the smallest. Raises :class:`ImageError` naming the folder
    or file when it is not a folder, holds no such file, a name has no frame
    number, two files share a number, or a frame number is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise ImageError(f"{folder}: no {'/'.join(sorted(set(suffixes)))} files")
    longest_first = sorted(suffixes, key=len, reverse=True)

    def stem(p: Path) -> str:  # the name without its (possibly double, .ome.tif) suffix
        return p.name[: len(p.name) - len(next(x for x in longest_first if p.name.lower().endswith(x)))]

    numbered: dict[int, Path] = {}
    for p in files:
        m = _FRAME_NUMBER.search(stem(p))
        if m is None:
            raise ImageError(f"{p}: no frame number in the file name")
        k = int(m.group(1))
        if k in numbered:
            raise ImageError(f"{p}: frame number {k} also used by {numbered[k].name}")
        numbered[k] = p
    nums = sorted(numbered)
    gap = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
    if gap:
        width = len(_FRAME_NUMBER.search(stem(numbered[nums[0]])).group(1))
        before = numbered[max(k for k in nums if k < gap[0])]
        missing = [f"{g:0{width}d}" for g in gap[:5]]
        raise ImageError(f"{folder}: frame number(s) {', '.join(missing)}"
                         f"{' ...' if len(gap) > 5 else ''} missing (gap after {before.name})")
    return [numbered[k] for k in nums]


def read_image(path: str | os.PathLike, timelapse: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/OME-TIFF (or a folder of frame files) as a (T, C, Y, X) array in its own dtype.

    A 2-D image is one channel. A 3-D TIFF without axis metadata is taken as
    (C, Y, X) unless ``timelapse`` is true, then as (T, Y, X). An RGB(A)
    picture has its colour samples as channels (alpha dropped); every sample
    of a TIFF is a channel.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():  # an OME-Zarr image or a folder of frame files (see :mod:`cellscale.source`)
        from .source import ImageSource

        with ImageSource.open(path, timelapse) as source:
            t, _, h, w = source.shape
            return np.stack([source.region(f, 0, h, 0, w) for f in range(t)])
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                data = series.asarray()
                axes = series.axes
        else:
            import imageio.v3 as iio

            data = iio.imread(path)
            axes = {2: "YX", 3: "YXS"}.get(data.ndim, "")
            if axes == "YXS" and data.shape[-1] == 4:  # RGBA picture: drop alpha
                data = data[..., :3]
    except Exception as err:  # tifffile/imageio raise many types on corrupt files
        raise ImageError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    if not axes:
        raise ImageError(f"{path}: cannot interpret an image of shape {data.shape}")
    return _to_tcyx(data, normalize_axes(axes, data.shape, path, timelapse))


def image_shape(path: str | os.PathLike, timelapse: bool = False) -> tuple[int, int, int, int]:
    """(T, C, Y, X) of an image without reading its pixels where possible."""
    from .source import ImageSource

    with ImageSource.open(path, timelapse) as source:
        return source.shape


def _stale_temporaries(path: Path) -> list[Path]:
    """What an earlier, killed attempt at writing ``path`` left beside it (``.NAME.XXXX.part``)."""
    return list(path.parent.glob(f".{glob.escape(path.name)}.*.part"))


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename onto it only on success.

    A job killed outright (SIGKILL, a preempted node) cannot clean up, so the
    temporary files an earlier attempt left for this same ``path`` are removed
    first: a rerun leaves only the result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_labels(path: str | os.PathLike, labels: np.ndarray, pixel_size_um: float | None = None) -> None:
    """Write a 32-bit label image as OME-TIFF ((Y, X) or (T, Y, X)), atomically."""
    labels = np.asarray(labels)
    if labels.max(initial=0) > np.iinfo(np.uint32).max:
        raise ValueError(f"{path}: more labels than a 32-bit image holds")
    labels = labels.astype(np.uint32, copy=False)
    axes = "YX" if labels.ndim == 2 else "TYX"
    metadata = {"axes": axes}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")


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


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image as written by :func:`write_labels` ((Y, X) or (T, Y, X))."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.series[0].asarray()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except Exception as err:
        raise ImageError(f"{path}: cannot read labels ({type(err).__name__}: {err})") from err
    if not np.issubdtype(data.dtype, np.integer):
        raise ImageError(f"{path}: labels must be integers, got {data.dtype}")
    return data


def write_image(path: str | os.PathLike, image: np.ndarray, channel_names: list[str] | None = None,
                axes: str = "CYX", pixel_size_um: float | None = None) -> None:
    """Write an intensity image as OME-TIFF with channel names, atomically."""
    metadata: dict = {"axes": axes}
    if channel_names:
        metadata["Channel"] = {"Name": list(channel_names)}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")


def channel_names_from_ome(path: str | os.PathLike) -> list[str] | None:
    """Channel names stored in an OME-TIFF's (or OME-Zarr's ``omero``) metadata, or None."""
    path = Path(path)
    if is_ome_zarr(path):
        try:
            names = [c.get("label") for c in ome_zarr_image(path)[2].get("channels", [])]
        except ImageError:
            return None
        return names if names and all(names) else None
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_ome:
                return None
            meta = tifffile.xml2dict(tif.ome_metadata)
    except Exception:
        return None
    image = meta.get("OME", {}).get("Image", {})
    if isinstance(image, list):
        image = image[0]
    channels = image.get("Pixels", {}).get("Channel", [])
    if isinstance(channels, dict):
        channels = [channels]
    names = [c.get("Name") for c in channels]
    return names if names and all(names) else None
