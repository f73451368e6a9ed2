"""Images read region by region, so a slide never has to fit in memory.

:class:`ImageSource` presents any image as (T, C, Y, X). TIFF/OME-TIFF files are
opened through tifffile's zarr store and OME-Zarr images (0.4 and 0.5, full
resolution level) through zarr, so only the chunks (tiles or strips) a region
touches are decoded; a folder of frame files (:class:`FrameFiles`) is read a
frame at a time; an image of one file per channel (:class:`ChannelFiles`) a file per channel; other formats and
in-memory arrays are held whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .formats import (
    CHANNEL_FILES_SEPARATOR,
    ImageError,
    _to_tcyx,
    channels_last,
    image_files,
    is_ome_zarr,
    normalize_axes,
    numbered_frames,
    ome_zarr_image,
    z_stack_error,
)
from .labels import LabelSeries


def open_ome_zarr(path: Path) -> tuple[object, str]:
    """(array, axis letters) of an OME-Zarr image; a single z-plane is kept as a size-1 "Z" axis (see
    :class:`ImageSource`), a z-stack is an error (project it first)."""
    array, names, _ = ome_zarr_image(path)
    if "z" in names and array.shape[names.index("z")] != 1:
        raise z_stack_error(path, array.shape[names.index("z")])
    return array, "".join(names).upper()


def _cannot_read(path, err: Exception, what: str = "image") -> ImageError:
    """A reader's failure on a file as one line: what could not be read, that the file is damaged or not an image
    (readers raise many types on those), and the reader's own first line (not its install advice)."""
    detail = (str(err).strip().splitlines() or [""])[0][:200]
    return ImageError(f"{path}: cannot read {what}: the file is damaged, truncated or not an image of its kind "
                      f"({type(err).__name__}: {detail})")


class FrameFiles:
    """A lazy (T, C, Y, X) array over a folder of per-frame image files (a CTC ``01/t000.tif`` ... folder).

    Frames are read when a region of them is asked for (the last one is kept),
    so a long movie never has to fit in memory. Every frame must have the
    first frame's shape and type: the error names the file that does not.
    """

    def __init__(self, folder: str | os.PathLike):
        self.files = numbered_frames(folder)
        self._cached: tuple[int, np.ndarray] | None = None
        first = self._frame(0)
        self.shape = (len(self.files), *first.shape)
        self.dtype = first.dtype
        self._check_headers()

    def _check_headers(self) -> None:
        """Compare every TIFF frame's stored shape and type with the first's before any pixel is read."""
        expected = None
        for path in self.files:
            if path.suffix.lower() not in (".tif", ".tiff"):
                continue  # other formats are checked as they are read
            try:
                with tifffile.TiffFile(path) as tif:
                    found = (tuple(tif.series[0].shape), tif.series[0].dtype)
            except Exception as err:
                raise _cannot_read(path, err) from err
            if expected is None:
                expected, first = found, path
            elif found != expected:
                raise ImageError(f"{path}: frame of shape {found[0]} ({found[1]}) differs from {expected[0]} "
                                 f"({expected[1]}) of {first.name}")

    def _frame(self, t: int) -> np.ndarray:
        cached = self._cached  # one read: another thread may replace it meanwhile
        if cached is not None and cached[0] == t:
            return cached[1]
        data = read_image(self.files[t])
        if data.shape[0] != 1:
            raise ImageError(f"{self.files[t]}: a frame file holds one frame, this one {data.shape[0]}")
        data = data[0]
        if cached is not None and (data.shape, data.dtype) != (self.shape[1:], self.dtype):
            raise ImageError(f"{self.files[t]}: frame of shape {data.shape} ({data.dtype}) differs from "
                             f"{self.shape[1:]} ({self.dtype}) of {self.files[0].name}")
        self._cached = (t, data)
        return data

    def __getitem__(self, key) -> np.ndarray:
        t, rest = key[0], tuple(key[1:])
        if isinstance(t, (int, np.integer)):
            return self._frame(int(t))[rest]
        return np.stack([self._frame(i)[rest] for i in range(*t.indices(self.shape[0]))])


class ChannelFiles:
    """A lazy (C, Y, X) array over one file per channel (``A01_s2_w1.TIF``, ``A01_s2_w2.TIF``, as plate readers
    write them), in channel order.

    Each file is one 2-D plane, opened as an :class:`ImageSource` (a TIFF lazily), and every one must have the
    first's height, width and pixel type: an :class:`ImageError` names the file and what differs.
    """

    def __init__(self, files):
        self.files = [Path(f) for f in files]
        self.sources: list[ImageSource] = []
        try:
            for path in self.files:
                self.sources.append(ImageSource.open(path))
                self._check(path, self.sources[-1])
        except Exception:
            self.close()
            raise
        first = self.sources[0]
        self.shape = (len(self.sources), *first.shape[2:])
        self.dtype = first.dtype

    def _check(self, path: Path, source: "ImageSource") -> None:
        t, c, h, w = source.shape
        if (t, c) != (1, 1):
            held = f"{c} channels" if t == 1 else f"{t} frames or planes" if c == 1 else f"{t} frames of {c} channels"
            raise ImageError(f"{path}: a channel file holds one 2-D plane of one channel, this one {held} (an image "
                             f"of one file per channel lists one such file per channel, separated by "
                             f"{CHANNEL_FILES_SEPARATOR!r})")
        first = self.sources[0]
        if (h, w, source.dtype) != (*first.shape[2:], first.dtype):
            raise ImageError(f"{path}: channel {len(self.sources) - 1} is {h} x {w} px ({source.dtype}), channel 0 "
                             f"({self.files[0].name}) {first.shape[2]} x {first.shape[3]} px ({first.dtype}): the "
                             f"files of one image must agree in size and pixel type")

    def __getitem__(self, key) -> np.ndarray:
        c, y, x = key
        channels = range(len(self.sources))[c]
        if isinstance(channels, int):
            return self.sources[channels]._read({"T": 0, "Y": y, "X": x})[0]
        return np.stack([self.sources[i]._read({"T": 0, "Y": y, "X": x})[0] for i in channels])

    def close(self) -> None:
        for source in self.sources:
            source.close()


class ImageSource:
    """A (T, C, Y, X) view over an array in any axis order.

    Parameters
    ----------
    array : anything sliceable like a NumPy array (NumPy, zarr).
    axes : its axes, letters from "TCYX" (each once, Y and X required), and "Z" for an axis of size 1
        (a single plane), which is indexed away.
    path : the file, for error messages.
    """

    def __init__(self, array, axes: str, path=None, closer=None):
        self._array = array
        self._axes = axes
        self.path = path
        self._closer = closer
        sizes = dict(zip(axes, array.shape))
        self.shape = tuple(int(sizes.get(a, 1)) for a in "TCYX")
        self.dtype = np.dtype(array.dtype)

    @classmethod
    def from_array(cls, image, path=None, axes: str | None = None) -> "ImageSource":
        """Wrap an in-memory array (read from ``path``, for error messages), not copied.

        ``axes``: its axes, letters from "TCYX" (Y and X required, each letter once), e.g. "YX" (one channel),
        "CYX" (channels first), "YXC" (channels last, as scikit-image reads RGB), "TYX" (a movie), "TCYX".
        Default: "YX" for a 2-D array, "TCYX" for a 4-D one; a 3-D array is ambiguous (channels or frames) and
        needs ``axes``. Anything NumPy can turn into an array (a list) is taken; pixels must be numbers
        (integer, float or bool).
        """
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            image = np.asarray(image)
        if axes is None:
            axes = {2: "YX", 4: "TCYX"}.get(image.ndim)
            if axes is None:
                hint = (" (a 3-D array may be channels or frames: pass axes='CYX', 'YXC' or 'TYX')"
                        if image.ndim == 3 else "")
                raise ValueError(f"{path or 'image'}: an array of shape {tuple(image.shape)} needs its axes{hint}; "
                                 f"a 2-D array is read as (Y, X), a 4-D one as (T, C, Y, X)")
        axes = axes.upper()
        if (len(axes) != image.ndim or len(set(axes)) != len(axes) or set(axes) - set("TCYX")
                or not {"Y", "X"} <= set(axes)):
            raise ValueError(f"{path or 'image'}: axes {axes!r} do not fit an array of shape {tuple(image.shape)}: "
                             f"give one letter of T, C, Y, X per axis, Y and X included")
        if np.dtype(image.dtype).kind not in "biuf":
            raise ValueError(f"{path or 'image'}: pixels of type {image.dtype} cannot be segmented: give an integer "
                             f"or float array")
        return cls(image, axes, path)

    @classmethod
    def open(cls, path: "str | os.PathLike | LabelSeries", timelapse: bool = False) -> "ImageSource":
        """Open an image file, an OME-Zarr image, a folder of frame files (a time-lapse), one file per channel of a
        still image (``w1.tif|w2.tif``: :func:`~cellscale.io.image_files`, :class:`ChannelFiles`), or one image of
        a multi-series OME-TIFF (a :class:`~cellscale.io.labels.LabelSeries`); TIFFs, OME-Zarr and frame folders
        lazily, other formats in memory."""
        if isinstance(path, LabelSeries):
            return cls._open_tiff(path.path, timelapse, path)
        files = image_files(path)
        if len(files) > 1:
            if timelapse:
                raise ImageError(f"{path}: one file per channel is read for still images (kind tissue); a time-lapse "
                                 f"is one file (a T-stack) or a folder of frame files")
            channels = ChannelFiles(files)
            return cls(channels, "CYX", path, closer=channels.close)
        path = Path(path)
        if not path.exists():
            raise ImageError(f"{path}: file not found")
        if is_ome_zarr(path):
            return cls(*open_ome_zarr(path), path)
        if path.is_dir():  # one file per frame: a time-lapse
            return cls(FrameFiles(path), "TCYX", path)
        if path.suffix.lower() not in (".tif", ".tiff"):
            return cls(read_image(path, timelapse), "TCYX", path)
        return cls._open_tiff(path, timelapse)

    @classmethod
    def _open_tiff(cls, path: Path, timelapse: bool, series_ref: "LabelSeries | None" = None) -> "ImageSource":
        if not path.exists():
            raise ImageError(f"{path}: file not found")
        tif = None
        try:
            tif = tifffile.TiffFile(path)
            series = tif.series[series_ref.index if series_ref else 0]
            axes = normalize_axes(series.axes, series.shape, path, timelapse, ome=tif.is_ome)
            import zarr

            # level 0: the full resolution of a pyramid (SubIFDs, as bfconvert and QuPath write), else the series
            array = zarr.open(series.aszarr(level=0), mode="r")
        except Exception as err:
            if tif is not None:
                tif.close()
            if isinstance(err, ImageError):
                raise
            raise _cannot_read(series_ref or path, err) from err
        return cls(array, axes, series_ref or path, closer=tif.close)

    @property
    def axes(self) -> str:
        """The wrapped array's axes (its :attr:`shape` is always (T, C, Y, X))."""
        return self._axes

    def close(self) -> None:
        if self._closer:
            self._closer()
            self._closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, index: dict) -> np.ndarray:
        key = tuple(0 if a == "Z" else index.get(a, slice(None)) for a in self._axes)
        try:
            data = np.asarray(self._array[key])
        except ImageError:
            raise
        except Exception as err:
            raise _cannot_read(self.path, err, "image data") from err
        kept = [a for a in self._axes if a != "Z" and not isinstance(index.get(a), (int, np.integer))]
        if "C" not in kept:
            data, kept = data[np.newaxis], ["C", *kept]
        return np.transpose(data, [kept.index(a) for a in "CYX"])

    def region(self, t: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """All channels of frame ``t`` in rows y0:y1, columns x0:x1: (C, h, w)."""
        return self._read({"T": int(t), "Y": slice(y0, y1), "X": slice(x0, x1)})

    def strided(self, t: int, step: int) -> np.ndarray:
        """Every ``step``-th row and column of frame ``t``: (C, ceil(Y/step), ceil(X/step))."""
        return self._read({"T": int(t), "Y": slice(None, None, step), "X": slice(None, None, step)})

    def check_finite(self, data: np.ndarray) -> None:
        """Refuse NaN and infinite pixel values: ``data``, pixels just read from this image, must be finite.

        Cheap where it holds (a floating-point image's pixels are checked as they are read; an integer image
        cannot hold such values). Otherwise an :class:`ImageError` names the file and how many pixel values
        of the whole image are not finite (counted in a second pass, band by band).
        """
        if self.dtype.kind != "f" or np.isfinite(data).all():
            return
        nan, inf = self.count_nonfinite()
        t, c, h, w = self.shape
        raise ImageError(f"{self.path or 'image'}: {nan + inf} of {t * c * h * w} pixel values are not finite "
                         f"({nan} NaN, {inf} infinite); cellscale refuses such images (segment and measure): "
                         f"replace them (e.g. by 0, or the background level) first")

    def count_nonfinite(self, max_values: int = 16_000_000) -> tuple[int, int]:
        """(NaN, infinite) pixel values of the whole image, read in bands of at most ``max_values`` values."""
        if self.dtype.kind != "f":
            return 0, 0
        t, c, h, w = self.shape
        rows = max(1, max_values // (c * w))
        nan = inf = 0
        for f in range(t):
            for y in range(0, h, rows):
                band = self.region(f, y, min(y + rows, h), 0, w)
                nan += int(np.count_nonzero(np.isnan(band)))
                inf += int(np.count_nonzero(np.isinf(band)))
        return nan, inf

    def subsample(self, max_pixels: int = 4_000_000, max_frames: int = 8) -> np.ndarray:
        """A strided (T', C, Y', X') sample of at most about ``max_pixels`` pixels per channel.

        Used for image-wide statistics (normalisation ranges), so every tile of
        an image is scaled alike whatever the tiling.
        """
        t, _, h, w = self.shape
        frames = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
        step = max(1, int(np.ceil(np.sqrt(len(frames) * h * w / max_pixels))))
        return np.stack([self.strided(f, step) for f in frames])


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of a still image, from its header where it has one; None when it cannot be read.

    A TIFF's size comes from its first series' axes (tifffile reads the header only: about 4 times faster than
    opening it as an image); anything else is opened as an :class:`ImageSource` (lazily for OME-Zarr). An image of
    one file per channel has its first file's size (the others are not read: the job that opens the image checks
    that they agree).
    """
    header = image_header(path)
    return None if header is None else (header.height, header.width)


@dataclass(frozen=True)
class ImageHeader:
    """What a still image's header says: its size, its channels (every channel of every file) and pixel type."""

    height: int
    width: int
    channels: int
    dtype: np.dtype

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes a pixel of every channel takes decoded, as a batch job holds the image (steps.batch)."""
        return self.channels * self.dtype.itemsize


def image_header(path: str | os.PathLike) -> ImageHeader | None:
    """The header of a still image (see :func:`image_size`); None when it cannot be read. A TIFF's channels are its
    first series' channel, colour-sample and unnamed stack axes (a still image's 3-D stack without axis metadata is
    channels); an image of one file per channel has as many channels as files times its first file's."""
    try:
        files = image_files(path)
        first = files[0]
        if Path(first).suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(first) as tif:
                series = tif.series[0]
                axes = "YXC" if channels_last(series.axes, series.shape) else series.axes.upper()
                sizes, dtype = dict(zip(axes, series.shape)), series.dtype
            h, w = int(sizes["Y"]), int(sizes["X"])
            channels = int(np.prod(series.shape)) // (h * w)   # every plane of the file, as a batch job holds it
        else:
            with ImageSource.open(first) as source:
                _, channels, h, w = source.shape
                dtype = source.dtype
        return ImageHeader(int(h), int(w), int(channels) * len(files), np.dtype(dtype))
    except Exception:  # unreadable, or not an image: whoever reads it next says why
        return None


def read_image(path: str | os.PathLike, timelapse: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/OME-TIFF (a folder of frame files, one file per channel) as a (T, C, Y, X) array in
    its own dtype.

    A 2-D image is one channel. A 3-D TIFF without axis metadata is taken as
    (C, Y, X) unless ``timelapse`` is true, then as (T, Y, X); as (Y, X, C)
    when its last axis is too narrow for an image (:func:`channels_last`). An RGB(A)
    picture has its colour samples as channels (alpha dropped); every sample
    of a TIFF is a channel.
    """
    several = len(image_files(path)) > 1
    path = Path(path)
    if not several and not path.exists():
        raise ImageError(f"{path}: file not found")
    if several or path.is_dir():  # OME-Zarr, a folder of frame files, one file per channel (see ImageSource.open)
        with ImageSource.open(path, timelapse) as source:
            t, _, h, w = source.shape
            return np.stack([source.region(f, 0, h, 0, w) for f in range(t)])
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                axes = normalize_axes(series.axes, series.shape, path, timelapse, tif.is_ome)  # a z-stack fails
                data = series.asarray()                                                       # before it is read
        else:
            import imageio.v3 as iio

            data = iio.imread(path)
            axes = {2: "YX", 3: "YXC"}.get(data.ndim, "")
            if axes == "YXC" and data.shape[-1] == 4:  # RGBA picture: drop alpha
                data = data[..., :3]
    except ImageError:
        raise
    except Exception as err:  # tifffile/imageio raise many types on corrupt files
        raise _cannot_read(path, err) from err
    if not axes:
        raise ImageError(f"{path}: cannot interpret an image of shape {data.shape}")
    return _to_tcyx(data, axes)
