import numpy as np
import pytest
import tifffile

from cellscale.io import (
    ImageError,
    ImageSource,
    channel_names_from_ome,
    check_labels,
    read_image,
    read_labels,
    write_image,
    write_labels,
)
from cellscale.segment.preprocess import select_channels


def test_png_grey_and_rgb(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "g.png", np.zeros((20, 30), np.uint8))
    iio.imwrite(tmp_path / "c.png", np.zeros((20, 30, 4), np.uint8))
    assert read_image(tmp_path / "g.png").shape == (1, 1, 20, 30)
    assert read_image(tmp_path / "c.png").shape == (1, 3, 20, 30)  # alpha dropped


def test_ome_tiff_channels_and_shape(tmp_path):
    data = np.arange(4 * 16 * 24, dtype=np.uint16).reshape(4, 16, 24)
    write_image(tmp_path / "a.ome.tif", data, ["DNA", "Mem", "A", "B"])
    assert read_image(tmp_path / "a.ome.tif").shape == (1, 4, 16, 24)
    with ImageSource.open(tmp_path / "a.ome.tif") as source:
        assert source.shape == (1, 4, 16, 24)
    assert channel_names_from_ome(tmp_path / "a.ome.tif") == ["DNA", "Mem", "A", "B"]
    tifffile.imwrite(tmp_path / "t.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb", planarconfig="separate", extrasamples=[0])
    assert read_image(tmp_path / "rgb.tif").shape == (1, 4, 16, 24)  # 4 samples = 4 channels
    assert read_image(tmp_path / "t.tif", timelapse=True).shape == (4, 1, 16, 24)


def test_a_short_movie_saved_without_metadata_is_frames_in_a_time_lapse(tmp_path):
    """tifffile marks a (3, Y, X) or (4, Y, X) stack written with plain imwrite as planar RGB: a time-lapse read it
    as one frame of 3-4 channels; its planes are frames there (lazily and whole), and channels in a still image."""
    rng = np.random.default_rng(0)
    for frames in (3, 4):
        movie = rng.integers(0, 4000, (frames, 16, 24), dtype=np.uint16)
        path = tmp_path / f"movie{frames}.tif"
        tifffile.imwrite(path, movie)
        np.testing.assert_array_equal(read_image(path, timelapse=True), movie[:, None])
        with ImageSource.open(path, timelapse=True) as source:
            assert source.shape == (frames, 1, 16, 24)
            np.testing.assert_array_equal(source.region(frames - 1, 0, 16, 0, 24), movie[-1:])
        np.testing.assert_array_equal(read_image(path), movie[None])  # a still image: channels, as before
        with ImageSource.open(path) as source:
            assert source.shape == (1, frames, 16, 24)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(ImageError, match="corrupt.tif"):
        read_image(bad)
    with pytest.raises(ImageError, match="nothere.tif: file not found"):
        read_image(tmp_path / "nothere.tif")


def test_labels_are_32_bit(tmp_path):
    labels = np.zeros((300, 300), np.int64)
    labels.ravel()[:70000] = np.arange(1, 70001)  # more than 16 bits hold
    write_labels(tmp_path / "l.ome.tif", labels)
    back = read_labels(tmp_path / "l.ome.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    assert not list(tmp_path.glob(".*part"))  # no temporary left behind


def test_a_label_image_is_named_after_its_sample(tmp_path):
    """As a per-batch file's series are (QuPath and Bio-Formats show the name; tifffile's default was Image0), for
    an array written whole and an array-like written tile by tile; the pixels are the same."""
    import zarr

    labels = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) % 7
    stored = zarr.create_array(store=str(tmp_path / "l.zarr"), shape=labels.shape, dtype=np.uint32, chunks=(16, 48))
    stored[:] = labels
    for name, given in (("whole", labels), ("tiled", stored)):
        write_labels(tmp_path / f"{name}.ome.tif", given, 0.5, name="A01_s1")
        with tifffile.TiffFile(tmp_path / f"{name}.ome.tif") as tif:
            assert tif.series[0].name == "A01_s1", name
        np.testing.assert_array_equal(read_labels(tmp_path / f"{name}.ome.tif"), labels)


def test_labels_must_be_integers(tmp_path):
    lab = np.zeros((3, 4), np.int16)
    assert check_labels(lab) is lab
    assert check_labels([[0, 1], [2, 0]]).dtype.kind == "i"
    for bad in (np.zeros((3, 4), np.float32), np.zeros((3, 4), bool)):
        with pytest.raises(ValueError, match=rf"nuclear must hold integer labels, got dtype {bad.dtype}"):
            check_labels(bad, "nuclear")
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((3, 4), np.float32))
    with pytest.raises(ImageError, match=r"float\.tif must hold integer labels, got dtype float32"):
        read_labels(tmp_path / "float.tif")


def test_channel_selection_and_errors():
    image = np.random.default_rng(0).random((1, 4, 8, 8))
    out = select_channels(image, {"nuclear": 2, "membrane": 0}, ["nuclear", "membrane"])
    np.testing.assert_array_equal(out[0, 0], image[0, 2].astype(np.float32))
    with pytest.raises(ValueError, match="nuclear channel index 7 is out of range"):
        select_channels(image, {"nuclear": 7}, ["nuclear"])
    # a tissue model on an image without a membrane channel given: what is missing and where to give it
    with pytest.raises(ValueError, match=r"the model reads a membrane channel and none is given \(the image has 4 "
                                         r"channel\(s\)\): set the sheet's membrane_channel, or cellscale segment's "
                                         r"--membrane-channel"):
        select_channels(image, {"nuclear": 0}, ["nuclear", "membrane"])


def test_brightfield_is_inverted():
    rgb = np.full((3, 20, 20), 220.0)
    rgb[:, 5:10, 5:10] = 60  # a dark nucleus on a bright background
    nuc = select_channels(rgb[np.newaxis], {}, ["nuclear"])[0, 0]
    assert nuc[7, 7] > nuc[15, 15]
    dark = 255 - rgb  # fluorescence saved as colour: not inverted
    nuc = select_channels(dark[np.newaxis], {}, ["nuclear"])[0, 0]
    assert nuc[7, 7] > nuc[15, 15]


def test_gamma_lifts_dim_nuclei_and_is_checked():
    from cellscale.segment.preprocess import channel_recipe, normalize, percentile_range

    image = np.zeros((1, 1, 40, 40), np.uint8)
    image[0, 0, 5:15, 5:15] = 5  # a dim nucleus, as in GOWT1
    image[0, 0, 25:35, 25:35] = 200  # a bright one
    for gamma, low, high in ((1.0, 0.0, 0.05), (0.5, 0.1, 0.2)):
        recipe = channel_recipe(image, {"nuclear": 0}, ["nuclear"], gamma)
        chans = recipe.apply(image[0])
        scaled = normalize(chans, percentile_range(chans[np.newaxis]))[0]
        assert low < scaled[10, 10] < high  # 5 / 200 linear; sqrt(5 / 200) with gamma 0.5
    with pytest.raises(ValueError, match="gamma must be positive"):
        channel_recipe(image, {"nuclear": 0}, ["nuclear"], 0.0)


def test_a_folder_of_frame_files_is_a_lazy_timelapse(tmp_path):
    """CTC-style tNNN.tif frames read as (T, C, Y, X), in number order (t10 after t9), one frame at a time;
    a missing number or a frame of another shape or type is an error naming the file."""
    from cellscale.io import ImageError, ImageSource

    rng = np.random.default_rng(0)
    movie = rng.integers(0, 255, (11, 30, 40), dtype=np.uint8)
    for t, frame in enumerate(movie):
        tifffile.imwrite(tmp_path / f"t{t}.tif", frame)  # unpadded numbers: t10 sorts before t2 as text
    with ImageSource.open(tmp_path, timelapse=True) as source:
        assert source.shape == (11, 1, 30, 40)
        np.testing.assert_array_equal(source.region(10, 5, 20, 3, 9)[0], movie[10, 5:20, 3:9])
        np.testing.assert_array_equal(source.subsample(max_frames=11)[:, 0], movie)
    np.testing.assert_array_equal(read_image(tmp_path)[:, 0], movie)
    (tmp_path / "t4.tif").unlink()
    with pytest.raises(ImageError, match=r"frame number\(s\) 4 missing \(gap after t3.tif\)"):
        ImageSource.open(tmp_path)
    tifffile.imwrite(tmp_path / "t4.tif", movie[4].astype(np.uint16))
    with pytest.raises(ImageError, match=r"t4.tif: frame of shape \(30, 40\) \(uint16\) differs"):
        ImageSource.open(tmp_path)
    tifffile.imwrite(tmp_path / "t4.tif", movie[4, :, :20])
    with pytest.raises(ImageError, match=r"t4.tif: frame of shape \(30, 20\)"):
        ImageSource.open(tmp_path)


def test_frame_files_named_as_microscopes_name_them(tmp_path):
    """The frame number is the number that varies between the names: a channel suffix (pos1_t3_c0.tif, unpadded so
    text order is not frame order) and Micro-Manager's names (a z suffix) are movies in frame order, not 'frame
    number 0 also used by'; of two numbers that each tell the files apart, the last is the frame; a hidden ._ file
    macOS leaves is not a frame; two channels' frames in one folder are refused naming the numbers that vary."""
    rng = np.random.default_rng(1)
    movie = rng.integers(0, 255, (11, 16, 20), dtype=np.uint8)
    layouts = {"chan": "pos1_t{t}_c0.tif", "mm": "img_channel000_position000_time{t:09d}_z000.tif",
               "ctc": "t{t:03d}.tif", "index": "img{i:02d}_t{t:03d}.tif"}  # index: a number per file, not in time
    for folder, pattern in layouts.items():
        (tmp_path / folder).mkdir()
        for t, frame in enumerate(movie):
            tifffile.imwrite(tmp_path / folder / pattern.format(t=t, i=7 * t % 11), frame)
        (tmp_path / folder / "._t000.tif").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble
        with ImageSource.open(tmp_path / folder, timelapse=True) as source:
            assert source.shape == (11, 1, 16, 20)
            np.testing.assert_array_equal(source.subsample(max_frames=11)[:, 0], movie)
    for t, frame in enumerate(movie[:3]):
        tifffile.imwrite(tmp_path / "chan" / f"pos1_t{t}_c1.tif", frame)
    with pytest.raises(ImageError, match=r"chan: the file names vary in 2 numbers \(t0, c0 in pos1_t0_c0\) and none "
                                         r"of them alone tells the 14 files apart"):
        ImageSource.open(tmp_path / "chan", timelapse=True)


def test_an_imagej_movie_of_z_stacks_is_refused_saying_so(tmp_path):
    """An ImageJ hyperstack with T frames of Z > 1 planes: 'a movie of 3 frames of 2 z-planes each', not
    'ambiguous axes'; one plane a frame (ImageJ drops Z) is a movie."""
    data = np.zeros((3, 2, 2, 16, 20), np.uint16)
    tifffile.imwrite(tmp_path / "tzcyx.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    for timelapse in (True, False):
        with pytest.raises(ImageError, match=r"tzcyx.tif: a movie of 3 frames of 2 z-planes each; cellscale "
                                             r"segments and tracks 2-D frames \(project"):
            ImageSource.open(tmp_path / "tzcyx.tif", timelapse=timelapse)
        with pytest.raises(ImageError, match="2 z-planes each"):
            read_image(tmp_path / "tzcyx.tif", timelapse=timelapse)
    tifffile.imwrite(tmp_path / "tcyx.tif", data[:, 0], imagej=True, metadata={"axes": "TCYX"})
    with ImageSource.open(tmp_path / "tcyx.tif", timelapse=True) as source:
        assert source.shape == (3, 2, 16, 20)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_images_are_read_lazily_with_their_channel_names(tmp_path, version):
    """An OME-Zarr image as bioformats2raw / ome-zarr-py write it (t, c, z, y, x with one plane)."""
    import zarr

    from cellscale.io import ImageSource, channel_names_from_ome

    rng = np.random.default_rng(0)
    data = rng.integers(0, 60000, (1, 3, 1, 50, 70), dtype=np.uint16)
    path = tmp_path / "img.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    group.create_array("0", data=data, chunks=(1, 1, 1, 32, 32))
    group.create_array("1", data=data[..., ::2, ::2], chunks=(1, 1, 1, 32, 32))
    meta = {"multiscales": [{"version": version, "axes": [
        {"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, {"name": "z", "type": "space"},
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0"}, {"path": "1"}]}],
        "omero": {"channels": [{"label": "DNA"}, {"label": "Membrane"}, {"label": "CD3"}]}}
    group.attrs.update(meta if version == "0.4" else {"ome": meta})
    with ImageSource.open(path) as source:
        assert source.shape == (1, 3, 50, 70)
        np.testing.assert_array_equal(source.region(0, 10, 40, 5, 66), data[0, :, 0, 10:40, 5:66])
    np.testing.assert_array_equal(read_image(path)[0], data[0, :, 0])
    assert channel_names_from_ome(path) == ["DNA", "Membrane", "CD3"]
    stack = zarr.open_group(str(tmp_path / "stack.zarr"), mode="w", zarr_format=2)
    stack.create_array("0", data=np.zeros((1, 1, 4, 8, 8), np.uint8))
    stack.attrs.update({"multiscales": [{"version": "0.4", "axes": list("tczyx"), "datasets": [{"path": "0"}]}]})
    with pytest.raises(ImageError, match="z-stack of 4 planes"):
        ImageSource.open(tmp_path / "stack.zarr")
    bare = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w", zarr_format=2)
    bare.create_array("0", data=np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageError, match="without OME-Zarr 'multiscales'"):
        ImageSource.open(tmp_path / "bare.zarr")


def test_atomic_path_removes_what_a_killed_attempt_left(tmp_path):
    """A job killed mid-write leaves .NAME.XXXX.part; the next write of NAME removes it (and only it)."""
    from cellscale.io import atomic_path

    target = tmp_path / "shard_0001.npy"
    left = [tmp_path / ".shard_0001.npy.3u7k65mj.part", tmp_path / ".shard_0001.npy.abc.part"]
    other = tmp_path / ".shard_0002.npy.3u7k65mj.part"
    for f in (*left, other):
        f.write_bytes(b"partial")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert not any(f.exists() for f in left) and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other.name])


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    """A folder output (CTC result, tiles) appears whole; a failed write leaves the old one; a killed attempt's
    temporary folder is removed by the next write."""
    from cellscale.io import atomic_dir

    out = tmp_path / "res"
    killed = tmp_path / ".res.k1ll3d.part"
    killed.mkdir()
    (killed / "mask000.tif").write_bytes(b"partial")
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"] and (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("second")
            raise RuntimeError("failed mid-write")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    # the usual permissions (the umask's), not the temporary folder's 0700: others on a shared disk can read it
    import os

    umask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "shared") as tmp:
            (tmp / "c.txt").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755


def test_sigterm_ends_a_step_without_leaving_temporary_files(tmp_path):
    """scancel or a preempted node sends SIGTERM: the step ends through its finally blocks (status 143),
    removing the file it was writing, and its log says so."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time; from pathlib import Path; from cellscale.io import atomic_path; "
            "from cellscale.logs import step_log\n"
            "with step_log(sys.argv[1], 'segment s'):\n"
            "    with atomic_path(Path(sys.argv[2])) as tmp:\n"
            "        tmp.write_bytes(b'partial'); Path(sys.argv[3]).touch(); time.sleep(60)\n")
    log, out, ready = tmp_path / "step.log", tmp_path / "shard_0000.npy", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", code, str(log), str(out), str(ready)])
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert any(p.name.endswith(".part") for p in tmp_path.iterdir())  # mid-write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "step.log"]
    assert "terminated (SIGTERM)" in log.read_text()


def test_ome_tiff_z_stacks_are_refused_and_time_lapse_stacks_still_read(tmp_path):
    """An OME-TIFF declares its axes: a Z axis of more than one plane is a z-stack, refused naming the file
    and the planes, unless a time-lapse sample's file has no T axis (its planes are frames, as before).
    Stacks without OME metadata are read as before: channels, or frames in a time-lapse."""
    stack = np.zeros((5, 32, 32), np.uint8)
    tifffile.imwrite(tmp_path / "zyx.ome.tif", stack, ome=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "czyx.ome.tif", np.zeros((2, 5, 32, 32), np.uint8), ome=True,
                     metadata={"axes": "CZYX"})
    tifffile.imwrite(tmp_path / "tzyx.ome.tif", np.zeros((3, 5, 32, 32), np.uint8), ome=True,
                     metadata={"axes": "TZYX"})
    for name, timelapse in (("zyx", False), ("czyx", False), ("tzyx", False), ("tzyx", True)):
        for read in (read_image, ImageSource.open):
            with pytest.raises(ImageError, match=rf"{name}\.ome\.tif: a z-stack of 5 planes; cellscale segments 2-D"):
                read(tmp_path / f"{name}.ome.tif", timelapse=timelapse)
    with pytest.raises(ImageError, match="if the planes are time points, read it as a time-lapse"):
        read_image(tmp_path / "zyx.ome.tif")
    # what keeps working: a time-lapse's Z planes as frames, one plane, T stacks, stacks without OME axes
    assert read_image(tmp_path / "zyx.ome.tif", timelapse=True).shape == (5, 1, 32, 32)
    with ImageSource.open(tmp_path / "czyx.ome.tif", timelapse=True) as source:
        assert source.shape == (5, 2, 32, 32)
    tifffile.imwrite(tmp_path / "one.ome.tif", stack[:1], ome=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "tyx.ome.tif", stack, ome=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "tcyx.ome.tif", np.zeros((5, 2, 32, 32), np.uint8), ome=True,
                     metadata={"axes": "TCYX"})
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    tifffile.imwrite(tmp_path / "imagej.tif", stack, imagej=True, metadata={"axes": "ZYX"})

    def shapes(name, timelapse):  # read whole and lazily: the same
        with ImageSource.open(tmp_path / name, timelapse) as source:
            assert read_image(tmp_path / name, timelapse).shape == source.shape
            return source.shape

    for timelapse in (False, True):
        assert shapes("one.ome.tif", timelapse) == (1, 1, 32, 32)
        assert shapes("tyx.ome.tif", timelapse) == (5, 1, 32, 32)
        assert shapes("tcyx.ome.tif", timelapse) == (5, 2, 32, 32)
        for name in ("plain.tif", "imagej.tif"):
            assert shapes(name, timelapse) == ((5, 1, 32, 32) if timelapse else (1, 5, 32, 32))


def test_non_finite_pixels_are_refused_naming_file_and_count(tmp_path):
    """NaN or infinite pixels of a floating-point image are an error naming the file and how many there are:
    found on the normalisation subsample, or else in the region a window reads (also when resampled)."""
    from cellscale.segment.tiles import make_plan, shard_tiles

    rng = np.random.default_rng(0)
    image = rng.random((1, 1, 96, 96)).astype(np.float32)
    plan_args = ({"nuclear": 0}, ["nuclear"], 64, 16, 16, 1.0)
    bad = image.copy()
    bad[0, 0, 10:13, 20:22] = np.nan
    bad[0, 0, 50, 50] = -np.inf
    tifffile.imwrite(tmp_path / "nan.tif", bad[0, 0])
    with ImageSource.open(tmp_path / "nan.tif") as source, \
            pytest.raises(ImageError, match=r"nan\.tif: 7 of 9216 pixel values are not finite \(6 NaN, 1 infinite\)"):
        make_plan(source, *plan_args)
    # a non-finite pixel the strided subsample skips is found when its window is read
    for scale in (1.0, 0.5):
        plan, recipe = make_plan(ImageSource.from_array(image), *plan_args, scale=scale)
        one = image.copy()
        one[0, 0, 95, 95] = np.inf
        source = ImageSource.from_array(one, tmp_path / "one.tif")
        with pytest.raises(ImageError, match=r"one\.tif: 1 of 9216 pixel values are not finite \(0 NaN, 1 infinite\)"):
            for shard in range(len(plan.shards)):
                shard_tiles(source, recipe, plan, shard)
    # finite floating-point and integer images are tiled as before
    plan, recipe = make_plan(ImageSource.from_array(image), *plan_args)
    assert np.isfinite(shard_tiles(ImageSource.from_array(image), recipe, plan, 0)).all()


def test_step_errors_name_sample_and_file_once(tmp_path):
    """A tile step's error names the sample, then the file once, then what is wrong; no partial output."""
    from cellscale.segment.model import shipped_model
    from cellscale.steps import StepError
    from cellscale.steps.segment import tile_sample

    rng = np.random.default_rng(0)
    path = tmp_path / "baddata.tif"  # a valid header whose compressed pixel data is garbage
    tifffile.imwrite(path, rng.integers(0, 255, (64, 64), dtype=np.uint8), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    image = rng.random((64, 64)).astype(np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    tifffile.imwrite(tmp_path / "zyx.ome.tif", np.zeros((3, 64, 64), np.uint8), ome=True, metadata={"axes": "ZYX"})
    for name, what in (("baddata.tif", "cannot read image data"), ("nan.tif", "1 of 4096 pixel values are not finite"),
                       ("zyx.ome.tif", "a z-stack of 3 planes")):
        with pytest.raises(StepError) as err:
            tile_sample("s1", tmp_path / name, tmp_path / "tiles" / name, {"nuclear": None, "membrane": None},
                        shipped_model("nuclear"))
        assert str(err.value).startswith(f"sample 's1': {tmp_path / name}: {what}"), str(err.value)
        assert str(err.value).count(name) == 1, str(err.value)
    assert not (tmp_path / "tiles").exists() or not list((tmp_path / "tiles").iterdir())


def test_a_single_image_given_as_a_time_lapse_is_refused_when_opened(tmp_path):
    """kind timelapse with a 2-D image: refused by the first step that opens it (naming sample, file and the fix),
    not by the tracker after tiling, segmenting and stitching it."""
    from cellscale.steps import StepError, open_sample_image

    tifffile.imwrite(tmp_path / "one.tif", np.zeros((32, 40), np.uint16))
    with pytest.raises(StepError, match=r"sample 'tl': .*one\.tif: a time-lapse sample needs frames to track, and "
                                        r"this image has one \(32 x 40 px\): give it kind tissue"):
        open_sample_image("tl", tmp_path / "one.tif", timelapse=True)
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 32, 40), np.uint16))
    with open_sample_image("tl", tmp_path / "two.tif", timelapse=True) as source:
        assert source.shape == (2, 1, 32, 40)
    with open_sample_image("still", tmp_path / "one.tif", timelapse=False) as source:
        assert source.shape == (1, 1, 32, 40)


@pytest.mark.parametrize("name, content", [("bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
                                           ("bad.tif", b"II*\x00" + b"\x00garbage" * 50),
                                           ("empty.tif", b"")])
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, name, content):
    """A damaged file's error is one line: the file, that it cannot be read, and the reader's first line (not its
    advice to install a plugin, nor a bare 'list index out of range')."""
    from cellscale.io import ImageError, ImageSource

    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as err:
        ImageSource.open(tmp_path / name)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / name}: cannot read image: the file is damaged, truncated or not an image")
    assert "\n" not in text and "pip install" not in text


def test_channel_zero_taken_as_nuclear_is_said_when_the_image_has_several(caplog):
    """No nuclear channel given: channel 0 is used, and with more than one channel the log says so."""
    import logging

    from cellscale.segment.preprocess import channel_recipe

    with caplog.at_level(logging.WARNING, logger="cellscale"):
        assert channel_recipe(np.ones((1, 2, 8, 8)), {"nuclear": None}, ["nuclear"]).indices == [0]
        assert "2 channels and no nuclear channel is given: channel 0" in caplog.text
        caplog.clear()
        channel_recipe(np.ones((1, 1, 8, 8)), {"nuclear": None}, ["nuclear"])
        channel_recipe(np.ones((1, 2, 8, 8)), {"nuclear": 1}, ["nuclear"])
        assert not caplog.text


def test_pixel_size_is_read_from_the_image_metadata(tmp_path, caplog):
    """OME-TIFF, ImageJ TIFF and OME-Zarr 0.4/0.5 state a pixel size, in their units; a plain TIFF's resolution
    tags, non-square pixels and sizes without units are not used; the sheet's value wins, with a warning."""
    import zarr

    from cellscale.io import pixel_size_from_metadata, sample_pixel_size

    data = np.zeros((2, 16, 24), np.uint16)
    write_image(tmp_path / "um.ome.tif", data, pixel_size_um=0.325)
    tifffile.imwrite(tmp_path / "nm.ome.tif", data, ome=True, metadata={
        "axes": "CYX", "PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.65e-3,
        "PhysicalSizeYUnit": "mm"})
    tifffile.imwrite(tmp_path / "wide.ome.tif", data, ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.6, "PhysicalSizeY": 0.3})
    tifffile.imwrite(tmp_path / "none.ome.tif", data, ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "CYX", "unit": "micron"})
    tifffile.imwrite(tmp_path / "ij_u.tif", data, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"axes": "CYX", "unit": "\\u00B5m"})
    tifffile.imwrite(tmp_path / "plain.tif", data, resolution=(72, 72), resolutionunit="INCH")
    (tmp_path / "frames").mkdir()
    for t in range(2):
        write_image(tmp_path / "frames" / f"t{t:03d}.tif", data[:1], pixel_size_um=0.24)
    for version, unit, expected in (("0.4", "micrometer", 1.0), ("0.5", "nanometer", 1e-3), ("0.4", None, None)):
        path = tmp_path / f"{version}-{unit}.ome.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
        group.create_array("0", data=data[:, None])
        axes = [{"name": "c", "type": "channel"}, {"name": "z", "type": "space"},
                *({"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "yx")]
        meta = {"multiscales": [{"version": version, "axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 2, 0.5, 0.5]}]}],
            "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 2]}]}]}  # the image's: 0.5 x 2 = 1
        group.attrs.update(meta if version == "0.4" else {"ome": meta})
        assert pixel_size_from_metadata(path) == expected, (version, unit)
    assert pixel_size_from_metadata(tmp_path / "um.ome.tif") == pytest.approx(0.325)
    assert pixel_size_from_metadata(tmp_path / "nm.ome.tif") == pytest.approx(0.65)
    assert pixel_size_from_metadata(tmp_path / "ij.tif") == pytest.approx(0.2)
    assert pixel_size_from_metadata(tmp_path / "ij_u.tif") == pytest.approx(0.4)
    assert pixel_size_from_metadata(tmp_path / "frames") == pytest.approx(0.24)
    for path in ("none.ome.tif", "plain.tif", "missing.tif"):
        assert pixel_size_from_metadata(tmp_path / path) is None, path
    tifffile.imwrite(tmp_path / "microns.tif", data, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"axes": "CYX", "unit": "microns"})
    tifffile.imwrite(tmp_path / "furlong.tif", data, imagej=True, resolution=(2, 2),
                     metadata={"axes": "CYX", "unit": "furlong"})
    assert pixel_size_from_metadata(tmp_path / "microns.tif") == pytest.approx(0.65)
    with caplog.at_level("WARNING"):
        assert pixel_size_from_metadata(tmp_path / "wide.ome.tif") is None
        assert pixel_size_from_metadata(tmp_path / "furlong.tif") is None
    assert "wide.ome.tif: pixels of 0.3 x 0.6 µm (Y x X), not square: its pixel size is not used" in caplog.text
    assert "furlong.tif: a pixel size in an unknown unit 'furlong'" in caplog.text
    caplog.clear()
    warned = _given_against_metadata(caplog, sample_pixel_size, (0.45, tmp_path / "wide.ome.tif", "s2"),
                                     tmp_path / "um.ome.tif", "s1", stated=0.325, far=0.5, near=0.3252)
    assert len(warned) == 1 and "sample 's1'" in warned[0] and "0.325" in warned[0] and "0.5" in warned[0]


def _given_against_metadata(caplog, sample_value, unusable, path, sample, stated, far, near) -> list[str]:
    """``sample_value`` (sample_pixel_size, sample_frame_interval): a value given for a file whose metadata's is
    ``unusable`` is used without a word; for ``path`` (whose metadata states ``stated``) None gives the metadata's,
    ``far`` and ``near`` (within 1%) are used as given. Returns the warnings of the last three calls."""
    given, bad, bad_sample = unusable
    with caplog.at_level("WARNING"):  # a value given: why the metadata's cannot be used is no one's concern
        assert sample_value(given, bad, bad_sample) == given
    assert not caplog.records
    with caplog.at_level("INFO"):
        assert sample_value(None, path, sample) == pytest.approx(stated)
        assert sample_value(far, path, sample) == far  # the given one wins
        assert sample_value(near, path, sample) == near  # within 1%: no warning
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_pyramidal_ome_tiff_is_read_at_full_resolution(tmp_path):
    """An OME-TIFF with its reduced resolutions in SubIFDs (as bfconvert and QuPath write pyramids) is read at full
    resolution, lazily as whole, with its channel names and pixel size."""
    from cellscale.io import image_size, pixel_size_from_metadata

    data = np.arange(2 * 64 * 96, dtype=np.uint16).reshape(2, 64, 96)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=1, tile=(32, 32), metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "CD3"]},
                                                              "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tif.write(data[:, ::2, ::2], subfiletype=1, tile=(32, 32))
    with ImageSource.open(path) as source:
        assert source.shape == (1, 2, 64, 96)
        np.testing.assert_array_equal(source.region(0, 0, 64, 0, 96), data)
        np.testing.assert_array_equal(source.region(0, 10, 20, 30, 70), data[:, 10:20, 30:70])
    np.testing.assert_array_equal(read_image(path)[0], data)
    assert channel_names_from_ome(path) == ["DNA", "CD3"]
    assert pixel_size_from_metadata(path) == 0.5
    assert image_size(path) == (64, 96)


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_a_channels_last_tiff_without_axes_is_read_as_y_x_c(tmp_path, channels):
    """A (Y, X, C) array saved as numpy users save it (tifffile.imwrite or scikit-image, not RGB: a page of Y x C
    pixels per row) is C channels of Y x X, not Y channels of a C-pixel-wide image; channels-first stacks and
    time-lapse stacks without axis metadata are read as before."""
    from cellscale.io import image_size
    from cellscale.io.formats import MIN_EDGE, channels_last, too_small

    rng = np.random.default_rng(0)
    yxc = rng.integers(0, 4000, (40, 56, channels), dtype=np.uint16)
    path = tmp_path / "yxc.tif"
    tifffile.imwrite(path, yxc, photometric="minisblack")
    expected = np.moveaxis(yxc, -1, 0)[None]
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(read_image(path, timelapse=True), expected)
    with ImageSource.open(path) as source:
        assert source.shape == (1, channels, 40, 56)
        np.testing.assert_array_equal(source.region(0, 5, 25, 10, 50), expected[0, :, 5:25, 10:50])
    assert image_size(path) == (40, 56)
    # the last axis is channels only while narrower than an image may be (MIN_EDGE px: too_small lets it through)
    assert too_small(40, MIN_EDGE) is None and too_small(40, MIN_EDGE - 1)
    assert channels_last("QYX", (40, 56, MIN_EDGE - 1)) and not channels_last("QYX", (40, 56, MIN_EDGE))
    tifffile.imwrite(tmp_path / "cyx.tif", np.moveaxis(yxc, -1, 0), photometric="minisblack")
    assert read_image(tmp_path / "cyx.tif").shape == (1, channels, 40, 56)
    assert read_image(tmp_path / "cyx.tif", timelapse=True).shape == (channels, 1, 40, 56)


def test_a_still_image_sample_with_frames_is_refused_when_opened(tmp_path):
    """kind tissue with a file of several frames (an OME-TIFF's T axis; an ImageJ hyperstack's Z, which cellscale
    reads as frames): refused naming sample, file, the frames and the fix, not segmented on its first frame alone
    (a batch did so, and its exports then failed for every image of the batch)."""
    from cellscale.steps import StepError, open_sample_image

    tifffile.imwrite(tmp_path / "tcyx.ome.tif", np.zeros((3, 2, 32, 40), np.uint16), ome=True,
                     metadata={"axes": "TCYX"})
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((4, 2, 32, 40), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    for name, frames in (("tcyx.ome.tif", 3), ("ij.tif", 4)):
        with pytest.raises(StepError, match=rf"sample 's': .*{name}: {frames} frames or planes .* in a still image "
                                            r"sample \(kind tissue\): give it kind timelapse"):
            open_sample_image("s", tmp_path / name, timelapse=False)
        with open_sample_image("s", tmp_path / name, timelapse=True) as source:
            assert source.shape == (frames, 2, 32, 40)


def test_channel_names_an_ome_tiff_repeats_are_told_apart(tmp_path, caplog):
    """An instrument's OME metadata repeating a channel name (CODEX's Blank cycles) does not refuse the image as
    'channel_names must be unique' (names the user never gave): the repeats get suffixes, with a warning; names the
    sheet gives must still fit the image."""
    from cellscale.measure.table import check_channel_names
    from cellscale.steps import StepError
    from cellscale.steps.measure import sample_channel_names

    path = tmp_path / "codex.ome.tif"
    write_image(path, np.zeros((4, 16, 16), np.uint16), ["DAPI", "Blank", "CD3", "Blank"])
    with caplog.at_level("WARNING", logger="cellscale"):
        names = sample_channel_names(path, 4, None)
    assert names == ["DAPI", "Blank", "CD3", "Blank_2"]
    check_channel_names(names, 4)  # what measuring asks of them
    assert "Blank_2" in caplog.text and "channel_names" in caplog.text
    assert sample_channel_names(path, 4, ["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    with pytest.raises(StepError, match="3 channel names given for 4 channels"):
        sample_channel_names(path, 4, ["a", "b", "c"])


def test_a_colour_picture_s_channels_are_named_r_g_b(tmp_path, capsys):
    """The tables named a colour picture's channels ch0, ch1, ch2: an RGB(A) PNG or JPEG and an interleaved RGB TIFF
    are R, G, B, an RGBA TIFF (which keeps its alpha as a channel) R, G, B, A; a planar stack tifffile marks RGB, a
    grey image and names the sheet gives are as before."""
    import imageio.v3 as iio
    import pandas as pd

    from cellscale.cli import main
    from cellscale.steps.measure import sample_channel_names

    rgba = np.random.default_rng(0).integers(0, 255, (24, 24, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgba.png", rgba)
    iio.imwrite(tmp_path / "rgb.jpg", rgba[..., :3])
    tifffile.imwrite(tmp_path / "rgb.tif", rgba[..., :3], photometric="rgb")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "stack.tif", rgba[..., :3].transpose(2, 0, 1))  # planar RGB to tifffile
    iio.imwrite(tmp_path / "grey.png", rgba[..., 0])
    expected = {"rgba.png": ["R", "G", "B"], "rgb.jpg": ["R", "G", "B"], "rgb.tif": ["R", "G", "B"],
                "rgba.tif": ["R", "G", "B", "A"], "stack.tif": ["ch0", "ch1", "ch2"], "grey.png": ["ch0"]}
    for name, names in expected.items():
        n = read_image(tmp_path / name).shape[1]
        assert sample_channel_names(tmp_path / name, n, None) == names, name
    assert sample_channel_names(tmp_path / "rgb.tif", 3, ["H", "E", "x"]) == ["H", "E", "x"]
    labels = np.zeros((24, 24), np.uint32)
    labels[4:12, 4:12] = 1
    write_labels(tmp_path / "labels.tif", labels)
    assert main(["measure", str(tmp_path / "labels.tif"), str(tmp_path / "rgba.png"), "-o",
                 str(tmp_path / "cells.csv")]) == 0
    table = pd.read_csv(tmp_path / "cells.csv")
    assert table.loc[0, "R"] == rgba[4:12, 4:12, 0].mean() and "ch0" not in table.columns


def test_frame_interval_is_read_from_the_image_metadata(tmp_path, caplog):
    """OME-TIFF TimeIncrement (+ unit, default s), ImageJ finterval (+ tunit, default seconds) and the OME-Zarr t
    axis's scale (with its unit) state a movie's frame interval, in seconds here; an unknown unit or a unitless t
    scale other than 1 is not used, with a warning saying why; the sheet's value wins, with a warning."""
    import zarr

    from cellscale.io import frame_interval_from_metadata, sample_frame_interval

    movie = np.zeros((3, 16, 24), np.uint16)
    tifffile.imwrite(tmp_path / "min.ome.tif", movie, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 2.5, "TimeIncrementUnit": "min"})
    tifffile.imwrite(tmp_path / "s.ome.tif", movie, ome=True, metadata={"axes": "TYX", "TimeIncrement": 30})
    tifffile.imwrite(tmp_path / "none.ome.tif", movie, ome=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "ij.tif", movie, imagej=True, metadata={"axes": "TYX", "finterval": 5})
    tifffile.imwrite(tmp_path / "ij_ms.tif", movie, imagej=True,
                     metadata={"axes": "TYX", "finterval": 250, "tunit": "ms"})
    tifffile.imwrite(tmp_path / "ij_bad.tif", movie, imagej=True,
                     metadata={"axes": "TYX", "finterval": 2, "tunit": "fortnight"})
    tifffile.imwrite(tmp_path / "plain.tif", movie, photometric="minisblack")
    for name, unit, t_scale, expected in (("minute", "minute", 0.5, 30.0), ("none", None, 1.0, None),
                                          ("unitless", None, 10.0, None)):
        path = tmp_path / f"{name}.ome.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.create_array("0", data=movie[:, None])
        axes = [{"name": "t", "type": "time", **({"unit": unit} if unit else {})}, {"name": "c", "type": "channel"},
                {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
        group.attrs.update({"multiscales": [{"version": "0.4", "axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [t_scale, 1, 1, 1]}]}]}]})
    assert frame_interval_from_metadata(tmp_path / "min.ome.tif") == pytest.approx(150.0)
    assert frame_interval_from_metadata(tmp_path / "s.ome.tif") == pytest.approx(30.0)
    assert frame_interval_from_metadata(tmp_path / "ij.tif") == pytest.approx(5.0)
    assert frame_interval_from_metadata(tmp_path / "ij_ms.tif") == pytest.approx(0.25)
    assert frame_interval_from_metadata(tmp_path / "minute.ome.zarr") == pytest.approx(30.0)
    for path in ("none.ome.tif", "plain.tif", "none.ome.zarr", "missing.tif"):
        assert frame_interval_from_metadata(tmp_path / path) is None, path
    with caplog.at_level("WARNING"):
        assert frame_interval_from_metadata(tmp_path / "ij_bad.tif") is None
        assert frame_interval_from_metadata(tmp_path / "unitless.ome.zarr") is None
    assert "ij_bad.tif: a frame interval in an unknown unit 'fortnight': its frame interval is not used" in caplog.text
    assert "unitless.ome.zarr: a time scale of 10 without a unit" in caplog.text
    caplog.clear()
    warned = _given_against_metadata(caplog, sample_frame_interval, (60.0, tmp_path / "ij_bad.tif", "m2"),
                                     tmp_path / "min.ome.tif", "m1", stated=150.0, far=300.0, near=150.5)
    assert len(warned) == 1 and "sample 'm1'" in warned[0] and "300 s" in warned[0] and "150 s" in warned[0]


def test_movie_labels_state_their_frame_interval(tmp_path):
    """write_labels writes a movie's frame interval as OME TimeIncrement (s), held whole or tiled; a still image's
    labels get none."""
    from cellscale.io import frame_interval_from_metadata

    class Lazy:  # an array-like that is not a NumPy array: the tiled writer
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype

        def __getitem__(self, key):
            return self.a[key]

    movie = np.zeros((3, 16, 24), np.uint32)
    movie[:, 4:8, 4:8] = 1
    write_labels(tmp_path / "whole.ome.tif", movie, 0.5, frame_interval_s=90.0)
    write_labels(tmp_path / "tiled.ome.tif", Lazy(movie), 0.5, frame_interval_s=90.0)
    write_labels(tmp_path / "still.ome.tif", movie[0], 0.5, frame_interval_s=90.0)
    for name in ("whole", "tiled"):
        with tifffile.TiffFile(tmp_path / f"{name}.ome.tif") as tif:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["TimeIncrement"], pixels["TimeIncrementUnit"]) == (90.0, "s"), name
        assert frame_interval_from_metadata(tmp_path / f"{name}.ome.tif") == 90.0
    assert frame_interval_from_metadata(tmp_path / "still.ome.tif") is None


def test_label_files_state_the_pixel_size_on_both_axes(tmp_path):
    """write_labels, whole and tiled: the OME metadata read back with tifffile gives the pixel size in X and in Y,
    and the 32-bit labels come back as written."""

    class Lazy:  # an array-like that is not a NumPy array: the tiled writer
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype

        def __getitem__(self, key):
            return self.a[key]

    labels = np.zeros((20, 12), np.uint32)
    labels[2:6, 3:9], labels[10:18, 1:4] = 70_000, 3
    write_labels(tmp_path / "whole.ome.tif", labels, 0.65)
    write_labels(tmp_path / "tiled.ome.tif", Lazy(labels), 0.65)
    for name in ("whole", "tiled"):
        with tifffile.TiffFile(tmp_path / f"{name}.ome.tif") as tif:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
            np.testing.assert_array_equal(tif.asarray(), labels)
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"]) == (0.65, 0.65), name


def test_frame_interval_from_the_ome_planes_delta_t(tmp_path, caplog):
    """An OME-TIFF without TimeIncrement: the median step between consecutive time points' Plane DeltaT (in its
    DeltaTUnit; a time point's first plane), per frame where a time point has no plane; TimeIncrement wins where
    both are there; one time point, or DeltaT in an unknown unit, states none (the latter with a warning)."""
    from cellscale.io import frame_interval_from_metadata

    def movie(name, planes, **more):  # 4 time points of 2 channels: 8 planes
        tifffile.imwrite(tmp_path / name, np.zeros((4, 2, 8, 8), np.uint16), ome=True,
                         metadata={"axes": "TCYX", "Plane": planes, **more})
        return tmp_path / name

    # two channels a time point, the second 1-2 s after the first; one step of the acquisition 2 min late
    seconds = movie("s.ome.tif", {"DeltaT": [0, 1, 60, 61, 120, 122, 300, 301], "DeltaTUnit": ["s"] * 8})
    minutes = movie("min.ome.tif", {"DeltaT": [0.0, 0.0, 1.5, 1.5, 3.0, 3.0, 4.5, 4.5], "DeltaTUnit": ["min"] * 8})
    both = movie("both.ome.tif", {"DeltaT": [0, 0, 60, 60, 120, 120, 180, 180]}, TimeIncrement=30)
    assert frame_interval_from_metadata(seconds) == pytest.approx(60.0)
    assert frame_interval_from_metadata(minutes) == pytest.approx(90.0)
    assert frame_interval_from_metadata(both) == pytest.approx(30.0)
    tifffile.imwrite(tmp_path / "one.ome.tif", np.zeros((1, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "TYX", "Plane": {"DeltaT": [5.0]}})
    assert frame_interval_from_metadata(tmp_path / "one.ome.tif") is None
    odd = movie("odd.ome.tif", {"DeltaT": [0, 0, 1, 1, 2, 2, 3, 3], "DeltaTUnit": ["fortnight"] * 8})
    with caplog.at_level("WARNING"):
        assert frame_interval_from_metadata(odd) is None
    assert "a frame interval in an unknown unit 'fortnight'" in caplog.text
    from cellscale.io.formats import _ome_frame_interval  # a Pixels element tifffile does not write

    # time point 1 has no plane (a writer that left it out): 120 s from 0 to 2 is 60 s a frame
    planes = [{"TheT": 0, "DeltaT": 0}, {"TheT": 2, "DeltaT": 120}, {"TheT": 3, "DeltaT": 180}]
    assert _ome_frame_interval({"Plane": planes}) == pytest.approx(60.0)


def channel_files(tmp_path, planes, names=None, pixel_size=None):
    """One 2-D TIFF per channel (MetaXpress-like ``A01_s1_w<N>.TIF``); OME metadata where a name or size is
    given. Returns the sheet's image: the files joined by the separator."""
    from cellscale.io import join_image_files

    files = []
    for i, plane in enumerate(planes):
        path = tmp_path / f"A01_s1_w{i + 1}.TIF"
        meta = {"axes": "YX"}
        if names and names[i]:
            meta["Channel"] = {"Name": names[i]}
        if pixel_size:
            meta.update(PhysicalSizeX=pixel_size, PhysicalSizeY=pixel_size)
        tifffile.imwrite(path, plane, ome=bool(names and names[i]) or bool(pixel_size), metadata=meta)
        files.append(path)
    return join_image_files(files)


def test_one_file_per_channel_is_one_image_read_lazily(tmp_path):
    from cellscale.io import image_files, image_size, pixel_size_from_metadata

    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 4000, (40, 56), dtype=np.uint16) for _ in range(3)]
    spec = channel_files(tmp_path, planes, names=["DNA", None, "Actin"], pixel_size=0.65)
    assert [str(p) for p in image_files(spec)] == [str(tmp_path / f"A01_s1_w{i}.TIF") for i in (1, 2, 3)]
    stacked = np.stack(planes)
    with ImageSource.open(spec) as source:
        assert source.shape == (1, 3, 40, 56) and source.dtype == np.uint16
        np.testing.assert_array_equal(source.region(0, 5, 20, 7, 30), stacked[:, 5:20, 7:30])
        np.testing.assert_array_equal(source.strided(0, 3), stacked[:, ::3, ::3])
    np.testing.assert_array_equal(read_image(spec)[0], stacked)
    assert image_size(spec) == (40, 56)
    assert channel_names_from_ome(spec) == ["DNA", "ch1", "Actin"]  # each file's one name, else ch<i>
    assert pixel_size_from_metadata(spec) == pytest.approx(0.65)   # the first file's


@pytest.mark.parametrize("bad, says", [
    (np.zeros((40, 50), np.uint16), "channel 1 is 40 x 50 px (uint16), channel 0 (A01_s1_w1.TIF) 40 x 56 px"),
    (np.zeros((40, 56), np.float32), "channel 1 is 40 x 56 px (float32), channel 0 (A01_s1_w1.TIF) 40 x 56 px "
                                     "(uint16)"),
    (np.zeros((2, 40, 56), np.uint16), "a channel file holds one 2-D plane of one channel, this one 2 channels"),
], ids=["shape", "dtype", "two-channels"])
def test_channel_files_that_disagree_are_refused_naming_the_file(tmp_path, bad, says):
    spec = channel_files(tmp_path, [np.zeros((40, 56), np.uint16), bad])
    with pytest.raises(ImageError) as err:
        ImageSource.open(spec)
    assert str(err.value).startswith(f"{tmp_path / 'A01_s1_w2.TIF'}: ") and says in str(err.value)


def test_a_missing_channel_file_or_a_time_lapse_of_channel_files_is_refused(tmp_path):
    spec = channel_files(tmp_path, [np.zeros((40, 56), np.uint16)] * 2)
    with pytest.raises(ImageError, match="one file per channel is read for still images"):
        ImageSource.open(spec, timelapse=True)
    with pytest.raises(ImageError, match=f"^{tmp_path / 'gone.tif'}: file not found"):
        ImageSource.open(f"{spec}|{tmp_path / 'gone.tif'}")
    with pytest.raises(ImageError, match="an empty file name"):
        ImageSource.open(f"{spec}|")


def test_a_movie_of_colour_frames_is_frames_of_colour_channels(tmp_path):
    """(T, Y, X, 3) saved with tifffile.imwrite(..., photometric='rgb'), which tifffile reads as axes QYXS: frames
    (Q) of colour channels (S), as a time-lapse and as a stack (it was 'unsupported axis S in CYXS')."""
    rng = np.random.default_rng(0)
    movie = rng.integers(0, 255, (5, 40, 48, 3), dtype=np.uint8)
    path = tmp_path / "rgb_movie.tif"
    tifffile.imwrite(path, movie, photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "QYXS"   # what the case is about
    for timelapse in (True, False):
        image = np.asarray(read_image(path, timelapse=timelapse))
        assert image.shape == (5, 3, 40, 48), timelapse
        np.testing.assert_array_equal(image, movie.transpose(0, 3, 1, 2))
