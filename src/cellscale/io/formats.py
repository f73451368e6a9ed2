"""Reading images and writing label images: the edges of the library.

Every image comes back as a (T, C, Y, X) array so the rest of the code never
guesses axes. Errors name the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".png", ".jpg", ".jpeg")


MIN_EDGE = 8  # px: the smallest image height or width cellscale segments


def too_small(h: int, w: int) -> str | None:
    """Why an image of ``h`` x ``w`` pixels is not segmented (an edge under :data:`MIN_EDGE`), or None: the one
    refusal of the workflow (:func:`cellscale.steps.open_sample_image`) and ``cellscale segment``."""
    if h < MIN_EDGE or w < MIN_EDGE:
        return f"image of shape {(int(h), int(w))} is too small to segment (at least {MIN_EDGE} x {MIN_EDGE} px)"
    return None


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


# between the files of one image in a sample sheet's ``image`` (one file per channel, as plate readers write them):
# a character Windows forbids in file names and shells treat as a pipe, so no instrument's or user's path holds it
CHANNEL_FILES_SEPARATOR = "|"


def image_files(image) -> list:
    """The files of a sample sheet's ``image``: ``[image]`` for one file or folder, or its files, one per channel in
    channel order, where it lists several (``A01_s2_w1.TIF|A01_s2_w2.TIF``, :data:`CHANNEL_FILES_SEPARATOR`
    between them; spaces around each are dropped). Anything but a str or Path (a
    :class:`~cellscale.io.LabelSeries`) is one image. An empty file name in the list is an :class:`ImageError`."""
    if not isinstance(image, (str, Path)) or CHANNEL_FILES_SEPARATOR not in str(image):
        return [image]
    files = [part.strip() for part in str(image).split(CHANNEL_FILES_SEPARATOR)]
    if not all(files):
        raise ImageError(f"{image}: an empty file name in a list of channel files (one file per channel, "
                         f"separated by {CHANNEL_FILES_SEPARATOR!r})")
    return files


def join_image_files(files) -> str:
    """One sample sheet ``image`` of several files, one per channel in channel order (see :func:`image_files`)."""
    files = [str(f) for f in files]
    return files[0] if len(files) == 1 else CHANNEL_FILES_SEPARATOR.join(files)


def is_image_file(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(IMAGE_SUFFIXES)


def z_stack_error(path, planes: int) -> ImageError:
    """The error for an image with more than one z-plane (OME-TIFF, OME-Zarr): cellscale segments 2-D images."""
    return ImageError(f"{path}: a z-stack of {planes} planes; cellscale segments 2-D images (project the stack, "
                      f"e.g. a maximum projection, or give one plane)")


def channels_last(axes: str, shape) -> bool:
    """Whether a TIFF series of tifffile ``axes`` and ``shape`` is an (Y, X, C) array stored without axis metadata:
    3-D, its last axis too narrow for an image (below ``MIN_EDGE``), as ``tifffile.imwrite`` and scikit-image write
    a channels-last array that is not RGB (a page of Y x C pixels per row; every reader returns it as Y, X, C)."""
    return len(shape) == 3 and axes.upper() in ("QYX", "IYX") and shape[2] < MIN_EDGE <= min(shape[:2])


def normalize_axes(axes: str, shape, path, timelapse: bool = False, ome: bool = False) -> str:
    """tifffile axis letters mapped onto "TCYX" letters (each at most once).

    A 3-D stack without axis metadata is channels, or time when ``timelapse``,
    except that one whose last axis is narrower than ``MIN_EDGE`` is (Y, X, C);
    colour samples (S) are channels (a stack of colour images, (Q, Y, X, S), is
    frames of colour channels), except in a time-lapse whose 3-D TIFF
    has no OME axes: tifffile marks a (3, Y, X) or (4, Y, X) stack written
    without metadata as planar RGB (S, Y, X), and those planes are frames;
    Z and unknown sequences (Q, I) are time.
    An OME-TIFF (``ome``) declares its axes: a Z axis of more than one plane
    is a z-stack and refused, except in a time-lapse whose file has no T axis
    (its planes are then taken as frames). Any file with a T axis and a Z axis
    of more than one plane (an ImageJ hyperstack of z-stacks) is refused.
    """
    axes = axes.upper()
    if ome and "Z" in axes and shape[axes.index("Z")] > 1 and (not timelapse or "T" in axes):
        error = z_stack_error(path, shape[axes.index("Z")])
        if "T" not in axes:  # perhaps a movie stored as planes
            error = ImageError(f"{error}; if the planes are time points, read it as a time-lapse (sample kind "
                               f"'timelapse', cellscale segment --timelapse)")
        raise error
    if "T" in axes and "Z" in axes and shape[axes.index("Z")] > 1:  # an ImageJ hyperstack of T frames, Z slices
        raise ImageError(f"{path}: a movie of {shape[axes.index('T')]} frames of {shape[axes.index('Z')]} z-planes "
                         f"each; cellscale segments and tracks 2-D frames (project each frame's planes, e.g. a "
                         f"maximum projection, or give one plane)")
    if channels_last(axes, shape):
        log.info("%s: a TIFF of shape %s without axis metadata is read as (Y, X, C): %d channels last", path,
                 tuple(shape), shape[2])
        return "YXC"
    if timelapse and not ome and axes == "SYX":  # ImageJ and cameras store colour interleaved (Y, X, S)
        log.info("%s: a 3-D TIFF of shape %s that tifffile marks as planar RGB, without axis metadata, is read as "
                 "%d frames of a time-lapse", path, tuple(shape), shape[0])
        return "TYX"
    if len(shape) == 3 and axes in ("QYX", "IYX", "ZYX"):
        axes = "TYX" if timelapse else "CYX"
    if "S" in axes and "C" not in axes and "T" not in axes:   # RGB frames: (Q, Y, X, S) from tifffile.imwrite
        axes = axes.replace("Q", "T")
    axes = axes.replace("Q", "C").replace("I", "T").replace("Z", "T")
    if "S" in axes and "C" not in axes:
        axes = axes.replace("S", "C")
    for letter in axes:
        if letter not in "TCYX":
            raise ImageError(f"{path}: unsupported axis {letter!r} in {axes!r}")
    if len(set(axes)) != len(axes):
        raise ImageError(f"{path}: a {len(shape)}-D image of shape {tuple(shape)} whose axes cannot be told apart "
                         f"(read as {axes!r}): cellscale reads 2-D images, channels (C, Y, X) and movies (T, Y, X) "
                         f"or (T, C, Y, X); write it as an OME-TIFF that names its axes, or give fewer dimensions")
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


def _frame_number_field(stems: list[str]) -> int | None:
    """Which number of the file names is the frame number: the one number that differs between files that share a
    name pattern (``pos1_t003_c0``: the ``003``; Micro-Manager's ``img_channel000_position000_time000000003_z000``:
    the time), or None (the last number) when the names follow no one pattern or one file is alone. Raises
    :class:`ImageError` when several numbers vary and none tells the files apart (frames of several channels or
    positions in one folder)."""
    parts = [re.split(r"(\d+)", s) for s in stems]
    if len({tuple(p[0::2]) for p in parts}) != 1 or len(parts) < 2:
        return None
    numbers = [[int(n) for n in p[1::2]] for p in parts]
    varying = [k for k in range(len(numbers[0])) if len({n[k] for n in numbers}) > 1]
    if len(varying) == 1:
        return varying[0]
    unique = [k for k in varying if len({n[k] for n in numbers}) == len(numbers)]
    if unique:
        return unique[-1]
    fields = ", ".join(re.search(r"[A-Za-z]*$", parts[0][2 * k]).group() + parts[0][2 * k + 1] for k in varying)
    raise ImageError(f"the file names vary in {len(varying)} numbers ({fields} in {stems[0]}) and none of them alone "
                     f"tells the {len(stems)} files apart: a folder of frame files holds one channel and position, "
                     f"one file per frame (move each channel's or position's files to a folder of its own)")


def numbered_frames(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The per-frame files of a folder (``t000.tif``, ``mask000.tif``, ``img_1.tif``, ``pos1_t003_c0.tif`` ...) in
    frame order.

    The frame number is the one number that differs between the names (``pos1_t003_c0.tif``: 3; where several
    differ, the last of those that tell every file apart), or the last number in each name when the names follow no
    one pattern or the folder holds one file (:func:`_frame_number_field`); the numbers must be consecutive from the
    smallest. Hidden files (``.name``, e.g. the ``._t000.tif`` macOS leaves on shared drives) are not frames. Raises
    :class:`ImageError` naming the folder or file when it is not a folder, holds no such file, a name has no frame
    number, two files share a number, a frame number is missing, or the names vary in several numbers of which none
    alone tells the files apart (several channels' or positions' frames in one folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: " + ("not a folder" if folder.exists() else "no such folder"))
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes))
    if not files:
        raise ImageError(f"{folder}: no {'/'.join(sorted(set(suffixes)))} files")
    longest_first = sorted(suffixes, key=len, reverse=True)

    def stem(p: Path) -> str:  # the name without its (possibly double, .ome.tif) suffix
        return p.name[: len(p.name) - len(next(x for x in longest_first if p.name.lower().endswith(x)))]

    try:
        field = _frame_number_field([stem(p) for p in files])
    except ImageError as err:
        raise ImageError(f"{folder}: {err}") from None

    def number(p: Path) -> re.Match | None:
        found = list(re.finditer(r"\d+", stem(p)))
        return (found[field] if field is not None else found[-1]) if found else None

    numbered: dict[int, Path] = {}
    for p in files:
        m = number(p)
        if m is None:
            raise ImageError(f"{p}: no frame number in the file name")
        k = int(m.group(0))
        if k in numbered:
            raise ImageError(f"{p}: frame number {k} also used by {numbered[k].name}")
        numbered[k] = p
    nums = sorted(numbered)
    gap = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
    if gap:
        width = len(number(numbered[nums[0]]).group(0))
        before = numbered[max(k for k in nums if k < gap[0])]
        missing = [f"{g:0{width}d}" for g in gap[:5]]
        raise ImageError(f"{folder}: frame number(s) {', '.join(missing)}"
                         f"{' ...' if len(gap) > 5 else ''} missing (gap after {before.name})")
    return [numbered[k] for k in nums]


#: names of a colour picture's channels, in order (alpha: an RGBA TIFF's fourth sample; a PNG's is dropped)
COLOUR_NAMES = ("R", "G", "B", "A")


def colour_channel_names(path: str | os.PathLike, n_channels: int) -> list[str] | None:
    """``R, G, B`` for a colour picture read as ``n_channels`` channels (and ``A`` for the alpha an RGBA TIFF keeps
    as its fourth), or None: a PNG or JPEG of 3 channels (:func:`cellscale.io.read_image` drops a PNG's alpha), a
    TIFF whose first page is photometric RGB with interleaved samples (its extra samples: ``A`` for alpha)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        return list(COLOUR_NAMES[:3]) if n_channels == 3 and path.is_file() else None
    if suffix not in (".tif", ".tiff") or not path.is_file():
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            # interleaved samples, as cameras, slide scanners and scikit-image write colour; tifffile also marks a
            # (3, Y, X) stack written without photometric as planar RGB, which is most often three stains
            if page.photometric != tifffile.PHOTOMETRIC.RGB or page.planarconfig != tifffile.PLANARCONFIG.CONTIG:
                return None
            alpha = [e in (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
                     for e in page.extrasamples or ()]
    except Exception:  # unreadable here: reading the image says why
        return None
    names = list(COLOUR_NAMES[:3]) + ["A" if a else None for a in alpha]
    return names if len(names) == n_channels and all(names) else None


def channel_names_from_ome(path: str | os.PathLike) -> list[str] | None:
    """Channel names stored in an OME-TIFF's (or OME-Zarr's ``omero``) metadata, or None. An image of one file per
    channel (:func:`image_files`) takes each file's one name (``ch<i>`` for a file that has none; None when none
    has)."""
    files = image_files(path)
    if len(files) > 1:
        names = [channel_names_from_ome(f) for f in files]
        if not any(n and len(n) == 1 for n in names):
            return None
        return [n[0] if n and len(n) == 1 else f"ch{i}" for i, n in enumerate(names)]
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


_UNITS = {1e6: ("m", "meter", "metre", "meters", "metres"), 1e4: ("cm", "centimeter", "centimetre"),
          1e3: ("mm", "millimeter", "millimetre"), 1e-3: ("nm", "nanometer", "nanometre", "nanometers", "nanometres"),
          1.0: ("µm", "μm", "um", "micron", "microns", "micrometer", "micrometre", "micrometers", "micrometres",
                "\\u00b5m"), 1e-4: ("å", "angstrom"), 1e-6: ("pm", "picometer", "picometre")}
_TO_UM = {name: factor for factor, names in _UNITS.items() for name in names}
# time units as OME (TimeIncrementUnit), ImageJ (tunit) and NGFF (the t axis's unit) write them, in seconds
_TIME_UNITS = {1.0: ("s", "sec", "secs", "second", "seconds"), 60.0: ("min", "mins", "minute", "minutes"),
               3600.0: ("h", "hr", "hrs", "hour", "hours"), 86400.0: ("d", "day", "days"),
               1e-3: ("ms", "msec", "millisecond", "milliseconds"),
               1e-6: ("µs", "μs", "us", "\\u00b5s", "microsecond", "microseconds"),
               1e-9: ("ns", "nanosecond", "nanoseconds")}
_TO_S = {name: factor for factor, names in _TIME_UNITS.items() for name in names}


class _Unusable(ValueError):
    """A pixel size or frame interval the metadata states that cannot be used (an unknown unit, non-square
    pixels): the reason."""


def _number(value) -> float | None:
    """A positive finite number, or None (no value stated)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _unit_factor(unit, factors: dict, what: str) -> float:
    key = str(unit).strip().lower()
    if key not in factors:
        raise _Unusable(f"a {what} in an unknown unit {str(unit)!r}")
    return factors[key]


def _square_um(y, x, unit_y, unit_x) -> float | None:
    """One pixel size in micrometres from a format's Y and X sizes and units; None where there is none (no size,
    or a unitless scale of 1, as writers leave it); :class:`_Unusable` where one is stated but cannot be used."""
    y, x = _number(y), _number(x)
    if y is None or x is None:
        return None
    if unit_y is None or unit_x is None:
        if (y, x) == (1.0, 1.0):
            return None  # the default scale: nothing stated
        raise _Unusable(f"a scale of {y:.4g} x {x:.4g} (Y x X) without a unit")
    y, x = y * _unit_factor(unit_y, _TO_UM, "pixel size"), x * _unit_factor(unit_x, _TO_UM, "pixel size")
    if abs(y - x) > 0.01 * max(x, y):
        raise _Unusable(f"pixels of {y:.4g} x {x:.4g} µm (Y x X), not square")
    return x


def _seconds(value, unit) -> float | None:
    """A frame interval in seconds from a format's time increment and unit; None where there is none (no value, or
    a unitless scale of 1, as NGFF writers leave the t axis); :class:`_Unusable` where one is stated but cannot be
    used."""
    value = _number(value)
    if value is None:
        return None
    if unit is None:
        if value == 1.0:
            return None  # the default scale: nothing stated
        raise _Unusable(f"a time scale of {value:.4g} without a unit")
    return value * _unit_factor(unit, _TO_S, "frame interval")


@dataclass(frozen=True)
class _Stated:
    """A quantity an image's metadata may state (the pixel size, the frame interval): how each format says it."""

    what: str  # in messages: "pixel size"
    unit: str  # the unit it is used in: "µm"
    given_by: str  # where a user gives it instead: "the sample sheet's pixel_size_um"
    ome: Callable[[dict], float | None]  # from an OME-TIFF's Pixels element
    imagej: Callable[[tifffile.TiffFile], float | None]  # from an ImageJ TIFF
    ngff: Callable[[list[dict], np.ndarray], float | None]  # from OME-Zarr's axes and full-resolution scale


def _ome_pixel_size(pixels: dict) -> float | None:
    if "PhysicalSizeX" not in pixels or "PhysicalSizeY" not in pixels:
        return None
    return _square_um(pixels["PhysicalSizeY"], pixels["PhysicalSizeX"],
                      pixels.get("PhysicalSizeYUnit", "µm"), pixels.get("PhysicalSizeXUnit", "µm"))


def _imagej_pixel_size(tif: tifffile.TiffFile) -> float | None:
    unit = (tif.imagej_metadata or {}).get("unit")
    if not unit:
        return None
    tags = tif.pages[0].tags
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value  # pixels per unit
    return _square_um(yd / yn, xd / xn, unit, unit) if xn and yn else None


def _ngff_pixel_size(axes: list[dict], scale: np.ndarray) -> float | None:
    names = [a.get("name", "").lower() for a in axes]
    y, x = names.index("y"), names.index("x")
    return _square_um(scale[y], scale[x], axes[y].get("unit"), axes[x].get("unit"))


def _ngff_frame_interval(axes: list[dict], scale: np.ndarray) -> float | None:
    names = [a.get("name", "").lower() for a in axes]
    return _seconds(scale[names.index("t")], axes[names.index("t")].get("unit")) if "t" in names else None


def _ome_frame_interval(pixels: dict) -> float | None:
    """``TimeIncrement`` (in ``TimeIncrementUnit``, OME's default s); without it, the median step between
    consecutive time points' ``DeltaT`` (in each plane's ``DeltaTUnit``) of the ``Plane`` elements, a time point's
    time being its first plane's (the earliest ``DeltaT`` of its channels and Z planes)."""
    increment = _seconds(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"))
    if increment is not None:
        return increment
    planes = pixels.get("Plane") or []
    planes = planes if isinstance(planes, list) else [planes]  # xml2dict: one Plane element is a dict
    times: dict[int, float] = {}
    for plane in planes:
        if not isinstance(plane, dict) or plane.get("DeltaT") is None:
            continue
        try:
            t, delta = int(plane.get("TheT", 0)), float(plane["DeltaT"])
        except (TypeError, ValueError):
            continue
        if np.isfinite(delta):
            delta *= _unit_factor(plane.get("DeltaTUnit", "s"), _TO_S, "frame interval")
            times[t] = min(delta, times.get(t, delta))
    if len(times) < 2:
        return None
    ts = sorted(times)
    return _number(np.median(np.diff([times[t] for t in ts]) / np.diff(ts)))  # per frame where a T is missing


PIXEL_SIZE = _Stated("pixel size", "µm", "the sample sheet's pixel_size_um, or --pixel-size", _ome_pixel_size,
                     _imagej_pixel_size, _ngff_pixel_size)
FRAME_INTERVAL = _Stated(
    "frame interval", "s", "the sample sheet's frame_interval_s, or --frame-interval", _ome_frame_interval,
    lambda tif: _seconds((tif.imagej_metadata or {}).get("finterval"),  # ImageJ's time unit: seconds by default
                         (tif.imagej_metadata or {}).get("tunit") or "sec"),
    _ngff_frame_interval)


def _from_metadata(quantity: _Stated, path, series: int, warn: bool) -> float | None:
    try:
        return _stated(quantity, Path(image_files(path)[0]), series)  # one file per channel: the first's
    except _Unusable as why:
        if warn:
            log.warning("%s: %s: its %s is not used; give one (%s)", path, why, quantity.what, quantity.given_by)
    except Exception as err:  # metadata only: whoever reads the pixels says what is wrong with the file
        log.debug("%s: no %s read (%s: %s)", path, quantity.what, type(err).__name__, err)
    return None


def _stated(quantity: _Stated, path: Path, series: int) -> float | None:
    if is_ome_zarr(path):
        return quantity.ngff(*_ngff_scale(path))
    if path.is_dir():
        return _stated(quantity, numbered_frames(path)[0], 0)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    with tifffile.TiffFile(path) as tif:
        if tif.is_ome:
            image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
            return quantity.ome((image[series] if isinstance(image, list) else image).get("Pixels", {}))
        if tif.is_imagej:
            return quantity.imagej(tif)
    return None


def _ngff_scale(path: Path) -> tuple[list[dict], np.ndarray]:
    """An OME-Zarr image's axes (as dicts) and its full-resolution level's scale (the level's, times the
    image's)."""
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    multiscales = attrs.get("ome", attrs)["multiscales"][0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in multiscales.get("axes", [])]
    scale = np.ones(len(axes))
    for transforms in (multiscales["datasets"][0].get("coordinateTransformations", []),
                       multiscales.get("coordinateTransformations", [])):  # the level's, then the image's
        for t in transforms:
            if t.get("type") == "scale":
                scale = scale * np.asarray(t["scale"], float)
    return axes, scale


def _for_sample(quantity: _Stated, given: float | None, path, sample: str | None) -> float | None:
    stated = _from_metadata(quantity, path, 0, warn=given is None)  # why the metadata's is unusable: only if needed
    name = f"sample {sample!r}: " if sample else ""
    if given is None:
        if stated is not None:
            log.info("%s%s: %s %.4g %s, from the image's metadata", name, path, quantity.what, stated, quantity.unit)
        return stated
    if stated is not None and abs(stated - given) > 0.01 * given:
        log.warning("%s%s: the %s given, %.4g %s, is used; the image's metadata says %.4g %s", name, path,
                    quantity.what, given, quantity.unit, stated, quantity.unit)
    return given


def pixel_size_from_metadata(path: str | os.PathLike, series: int = 0, warn: bool = True) -> float | None:
    """Micrometres per pixel as an image's own metadata states it, or None.

    Read from an OME-TIFF's ``PhysicalSizeX``/``PhysicalSizeY`` (and their units; OME's default is µm), an ImageJ
    TIFF's resolution and ``unit``, or an OME-Zarr's full-resolution ``scale`` with its axes' units; the first
    frame file of a frame folder; the first file of an image of one file per channel (:func:`image_files`). A
    plain TIFF's resolution tags are not read (scanners and editors write 72 dpi there). A size that is stated but
    cannot be used (an unknown unit, a scale without a unit, non-square pixels) is None with a warning (``warn``)
    saying why. Only the header is read.
    """
    return _from_metadata(PIXEL_SIZE, path, series, warn)


def frame_interval_from_metadata(path: str | os.PathLike, series: int = 0, warn: bool = True) -> float | None:
    """Seconds between frames as an image's own metadata states it, or None.

    Read from an OME-TIFF's ``TimeIncrement`` (and ``TimeIncrementUnit``; OME's default is s; without one, the
    median step between consecutive time points' ``Plane`` ``DeltaT``, in their ``DeltaTUnit``), an ImageJ TIFF's
    ``finterval`` (and ``tunit``; ImageJ's default is seconds), or an OME-Zarr's full-resolution ``scale`` of its
    ``t`` axis with that axis's unit; the first frame file of a frame folder. One that is stated but cannot be used
    (an unknown unit, a scale without a unit) is None with a warning (``warn``) saying why. Only the header is read.
    """
    return _from_metadata(FRAME_INTERVAL, path, series, warn)


def sample_pixel_size(given: float | None, path, sample: str | None = None) -> float | None:
    """The pixel size to use for a sample: the ``given`` one (the sheet's ``pixel_size_um``, ``--pixel-size``),
    else the image's own metadata's (:func:`pixel_size_from_metadata`); a warning where both are known and differ by
    over 1%."""
    return _for_sample(PIXEL_SIZE, given, path, sample)


def sample_frame_interval(given: float | None, path, sample: str | None = None) -> float | None:
    """The frame interval (seconds) to use for a time-lapse sample: the ``given`` one (the sheet's
    ``frame_interval_s``), else the image's own metadata's (:func:`frame_interval_from_metadata`); a warning where
    both are known and differ by over 1%."""
    return _for_sample(FRAME_INTERVAL, given, path, sample)
