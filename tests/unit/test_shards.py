"""Shard files (cellscale.segment.shards): compact windows that decode to exactly the normalised windows, lazy
reads, and tile -> segment -> stitch through them giving the labels of a direct segmentation."""

import numpy as np
import pytest

from cellscale.io import ImageSource
from cellscale.segment.shards import create_maps, open_maps, open_windows, shard_name, shard_number, write_windows
from cellscale.segment.tiles import make_plan, shard_tiles


def _tissue(small_tissue, frames=1):
    return np.stack([small_tissue.image] * frames)  # (T, 4, Y, X) uint16


def _rgb():
    rng = np.random.default_rng(3)
    return (rng.random((1, 3, 300, 270)) * 255).astype(np.uint8)


CASES = {  # name: (image, roles, inputs, scale, gamma, what the shard holds)
    "uint16, 2 of 4 channels": (lambda t: _tissue(t), {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"], 1.0,
                                1.0, "raw"),
    "one channel twice, gamma": (lambda t: _tissue(t), {"nuclear": 1, "membrane": 1}, ["nuclear", "membrane"], 1.0,
                                 0.5, "raw"),
    "time-lapse, edge windows": (lambda t: _tissue(t, 2)[..., :300, :250], {"nuclear": 2}, ["nuclear"], 1.0, 1.0,
                                 "raw"),
    "colour (luminance, inverted or not)": (lambda t: _rgb(), {}, ["nuclear"], 1.0, 1.0, "raw"),
    "float32 image": (lambda t: _tissue(t).astype(np.float32) / 7, {"nuclear": 0}, ["nuclear"], 1.0, 1.0, "raw"),
    "resampled": (lambda t: _tissue(t), {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"], 0.7, 1.0,
                  "normalised"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stored_windows_decode_to_exactly_the_normalised_windows(tmp_path, small_tissue, case):
    make, roles, inputs, scale, gamma, kind = CASES[case]
    source = ImageSource.from_array(make(small_tissue))
    plan, recipe = make_plan(source, roles, inputs, tile=128, overlap=32, multiple=16, shard_mpx=0.07, scale=scale,
                             gamma=gamma)
    assert len(plan.shards) > 1
    for shard in range(len(plan.shards)):
        path = tmp_path / shard_name(shard)
        assert write_windows(path, source, recipe, plan, shard) == kind
        windows, expected = open_windows(path), shard_tiles(source, recipe, plan, shard)
        assert windows.shape == expected.shape
        np.testing.assert_array_equal(windows[:], expected)  # bit for bit: the network sees the same inputs
        np.testing.assert_array_equal(windows[1:3], expected[1:3])
        np.testing.assert_array_equal(windows[-1], expected[-1])


def test_shards_are_compressed_and_read_one_window_at_a_time(tmp_path, small_tissue, monkeypatch):
    from zarr.storage import ZipStore

    source = ImageSource.from_array(_tissue(small_tissue))
    plan, recipe = make_plan(source, {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"], tile=128, overlap=32,
                             multiple=16, shard_mpx=1.0)
    path = tmp_path / shard_name(0)
    write_windows(path, source, recipe, plan, 0)
    n = len(plan.shards[0])
    float32_bytes = n * 2 * 128 * 128 * 4
    assert path.stat().st_size < float32_bytes / 2  # uint16, compressed: well under the old float32 windows
    rng = np.random.default_rng(0)
    maps = rng.random((n, 8, 128, 128), np.float32)
    for c in (0, 4):  # each compartment: distance, then softmax classes (background, boundary, interior)
        e = np.exp(4 * maps[:, c + 1:c + 4])
        maps[:, c + 1:c + 4] = e / e.sum(1, keepdims=True)
    maps[:, :, :64] = np.array([0, 1, 0, 0, 0, 1, 0, 0])[:, None, None]  # background: compresses
    with create_maps(tmp_path / "maps" / shard_name(0), maps.shape) as out:
        out[:3] = maps[:3]
        out[3:] = maps[3:]
    assert (tmp_path / "maps" / shard_name(0)).stat().st_size < maps.astype(np.float16).nbytes * 3 / 4
    assert [p.name for p in (tmp_path / "maps").iterdir()] == [shard_name(0)]  # no temporary left

    read = []
    get = ZipStore.get

    async def spy(self, key, *args, **kwargs):
        read.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(ZipStore, "get", spy)
    stored = open_maps(tmp_path / "maps" / shard_name(0))
    read.clear()
    window = stored[2]
    assert [k for k in read if k.startswith("c/")] == ["c/2/0/0/0"]  # only that window's chunk
    assert stored.shape == maps.shape and window.dtype == np.float16
    kept = [0, 1, 2, 4, 5, 6]  # what stitching reads: lossless float16
    np.testing.assert_array_equal(window[kept], maps[2, kept].astype(np.float16))
    np.testing.assert_allclose(window[[3, 7]], maps[2, [3, 7]], atol=2e-3)  # p(interior), recomputed
    np.testing.assert_array_equal(stored[1:3][1], window)
    one = stored.window(2)  # what stitching reads, one compartment's maps: a view of the stored ones
    assert np.shares_memory(one[4:7], one[0:3].base) and np.array_equal(one[4:7], window[4:7])
    np.testing.assert_array_equal(np.asarray(one), window)
    np.testing.assert_array_equal(one[2:5], window[2:5])  # p(interior) in the middle: recomputed
    windows = open_windows(path)
    read.clear()
    np.testing.assert_array_equal(windows[3:5], shard_tiles(source, recipe, plan, 0)[3:5])
    assert sorted(k for k in read if k.startswith("c/")) == ["c/3/0/0/0", "c/4/0/0/0"]
    assert shard_number(shard_name(12)) == 12 and shard_number("shard_0012.npy") is None


def test_the_same_shard_written_again_later_is_the_same_file(tmp_path, small_tissue, monkeypatch):
    """A rerun that writes a shard again (a killed run's rerun) gives the bytes it replaces: the zip entries carry a
    fixed date, not their write time (ZipStore's, 2-s resolution: the second write is a day later)."""
    import time

    source = ImageSource.from_array(_tissue(small_tissue))
    plan, recipe = make_plan(source, {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"], tile=128, overlap=32,
                             multiple=16, shard_mpx=1.0)
    n = len(plan.shards[0])
    maps = np.random.default_rng(1).random((n, 8, 128, 128), np.float32)
    now = time.time()
    for run in ("first", "later"):
        if run == "later":
            monkeypatch.setattr(time, "time", lambda: now + 86400)
        write_windows(tmp_path / run / "tiles" / shard_name(0), source, recipe, plan, 0)
        with create_maps(tmp_path / run / "maps" / shard_name(0), maps.shape) as out:
            out[:3] = maps[:3]  # several windows (chunks) a batch, as segment writes them
            out[3:] = maps[3:]
    for kind in ("tiles", "maps"):
        first, later = ((tmp_path / run / kind / shard_name(0)).read_bytes() for run in ("first", "later"))
        assert len(first) > 10000 and first == later, kind


def test_tile_segment_stitch_give_the_labels_of_a_direct_segmentation(tmp_path, small_tissue, tissue_predictor):
    """The workflow's steps, through shard files, give the labels segment_image gives in memory."""
    from support import MODELS

    from cellscale.io import read_labels, write_image
    from cellscale.segment.image import segment_image
    from cellscale.segment.settings import SegmentSettings, TilingSettings
    from cellscale.steps.segment import segment_shard, stitch_sample, tile_sample

    image_path = tmp_path / "tissue.ome.tif"
    write_image(image_path, small_tissue.image, ["DNA", "Membrane", "CD3", "CD20"])
    roles = {"nuclear": 0, "membrane": 1}
    plan = tile_sample("s", image_path, tmp_path / "tiles", roles, MODELS / "tissue",
                       tiling=TilingSettings(tile=128, overlap=32, shard_mpx=0.07))
    assert len(plan.shards) > 3
    maps = []
    for shard in range(len(plan.shards)):
        maps.append(tmp_path / "maps" / shard_name(shard))
        segment_shard(tmp_path / "tiles" / shard_name(shard), MODELS / "tissue", maps[-1],
                      SegmentSettings(precision=tissue_predictor.precision, augment="none"))
    direct = segment_image(tissue_predictor, small_tissue.image[np.newaxis], roles, tile=128, overlap=32)
    for compartment in ("nuclear", "whole_cell"):
        out = tmp_path / f"{compartment}.ome.tif"
        stitch_sample(tmp_path / "tiles" / "plan.json", maps, MODELS / "tissue", compartment, out)
        labels = read_labels(out)
        assert labels.max() > 40
        np.testing.assert_array_equal(labels, direct[compartment][0])


def test_progress_lines_come_about_every_tenth_of_a_slow_loop(monkeypatch):
    import cellscale.logs as logs

    now = [0.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    for seconds, total, lines in ((0.0, 100, [100]), (60.0, 100, list(range(10, 101, 10))), (60.0, 3, [1, 2, 3]),
                                  (5.0, 100, [*range(10, 91, 10), 100])):   # 5 s a step: a tenth is 50 s, over 30
        progress = logs.Progress(total)
        due = []
        for done in range(1, total + 1):
            now[0] += seconds
            due += [done] if progress.due(done) else []
        assert due == lines, (seconds, total)


def test_a_movie_logs_its_tile_and_stitch_progress_once_when_fast(tmp_path, caplog):
    """The workflow's tile and stitch steps log a line a shard and a frame only while they are slow: a fast movie
    gets the last of each (the demo's movie wrote 24 stitch lines)."""
    from support import MODELS

    from cellscale.io import write_image
    from cellscale.segment.settings import SegmentSettings, TilingSettings
    from cellscale.steps.segment import segment_shard, stitch_sample, tile_sample
    from cellscale.synth.timelapse import make_timelapse

    movie = make_timelapse(n_frames=12, shape=(96, 96), n_cells=4, seed=3)
    write_image(tmp_path / "movie.tif", (movie.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    with caplog.at_level("INFO", logger="cellscale"):
        plan = tile_sample("m", tmp_path / "movie.tif", tmp_path / "tiles", {"nuclear": 0}, MODELS / "nuclear",
                           tiling=TilingSettings(tile=128, overlap=32, shard_mpx=0.02), timelapse=True)
        n = len(plan.shards)
        maps = [tmp_path / "maps" / shard_name(i) for i in range(n)]
        for i in range(n):
            segment_shard(tmp_path / "tiles" / shard_name(i), MODELS / "nuclear", maps[i],
                          SegmentSettings(augment="none"))
        cells = stitch_sample(tmp_path / "tiles" / "plan.json", maps, MODELS / "nuclear", "nuclear",
                              tmp_path / "labels.ome.tif")
    said = [r.getMessage() for r in caplog.records]
    assert n > 1 and len(cells) == 12
    assert [s for s in said if s.startswith("tile m: shard")] == [f"tile m: shard {n}/{n} written (raw windows)"]
    assert [s for s in said if s.startswith("stitch nuclear:")] == [f"stitch nuclear: frame 12/12, {cells[-1]} cells"]
