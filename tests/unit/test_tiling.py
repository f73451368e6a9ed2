import numpy as np
import pytest

from cellscale.io import ImageSource
from cellscale.segment.tiles import blend_weights, make_plan, plan_tiles, shard_tiles


@pytest.mark.parametrize("shape", [(1, 256, 256), (1, 520, 696), (3, 100, 37), (1, 1000, 1300),
                                   (1, 20, 1000), (1, 1000, 8), (1, 40, 700)])  # thin strips: one window across
def test_windows_cover_every_pixel(shape):
    plan = plan_tiles(shape, tile=256, overlap=32, multiple=16, shard_mpx=0.2)
    cover = np.zeros(shape, int)
    th, tw = plan.tile
    assert th % 16 == 0 and tw % 16 == 0
    for t, y, x in plan.tiles:
        cover[t, y:y + th, x:x + tw] += 1
    assert cover.min() >= 1
    flat = sorted(i for shard in plan.shards for i in shard)
    assert flat == list(range(len(plan.tiles)))  # every tile in exactly one shard


def test_shards_follow_megapixels():
    plan = plan_tiles((1, 2048, 2048), tile=256, overlap=32, multiple=16, shard_mpx=0.5)
    per_shard = int(0.5e6 // (256 * 256))
    assert all(len(s) <= per_shard for s in plan.shards)
    assert [len(s) for s in plan.shards[:-1]] == [per_shard] * (len(plan.shards) - 1)  # full shards, then the rest
    assert len(plan.shards) == -(-len(plan.tiles) // per_shard) > 1


def test_small_image_uses_small_window():
    plan = plan_tiles((1, 100, 37), tile=256, overlap=32, multiple=16, shard_mpx=16)
    assert plan.tile == [112, 48]
    assert len(plan.tiles) == 1


@pytest.mark.parametrize("length,edge,n", [(256, 256, 1), (360, 368, 1), (520, 288, 2), (696, 368, 2),
                                           (1024, 368, 3), (4608, 496, 10)])
def test_windows_are_no_larger_than_needed(length, edge, n):
    """As many windows as 512-px ones would need, each just large enough to cover the axis with them, with
    at least the overlap between neighbours: the network sees little more than the image."""
    plan = plan_tiles((1, length, length), tile=512, overlap=32, multiple=16, shard_mpx=16)
    assert plan.tile == [edge, edge] and len(plan.tiles) == n * n
    starts = sorted({y for _, y, _ in plan.tiles})
    assert starts[0] == 0 and starts[-1] + edge == max(length, edge)
    assert all(b - a <= edge - 32 for a, b in zip(starts, starts[1:]))


def test_windows_are_zero_past_the_image_edge():
    image = np.random.default_rng(0).random((1, 2, 10, 10)).astype(np.float32) + 1
    plan, recipe = make_plan(ImageSource.from_array(image), {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"],
                             tile=16, overlap=4, multiple=16, shard_mpx=16)
    assert plan.tile == [16, 16] and plan.tiles == [[0, 0, 0]]
    w = shard_tiles(ImageSource.from_array(image), recipe, plan, 0)
    assert w.shape == (1, 2, 16, 16)
    assert w[0, :, :10, :10].max() > 0 and w[0, :, 10:, :].max() == 0 and w[0, :, :, 10:].max() == 0


def test_blend_weights_fade_at_edges():
    w = blend_weights(64, 64, 16)
    assert w.min() > 0
    assert w[32, 32] == pytest.approx(1.0)
    assert w[0, 32] < 0.1


def test_a_constant_input_channel_is_named_in_a_warning(caplog):
    """An all-zero membrane channel (a wrong index, an empty acquisition) still gives whole-cell labels: the
    plan's warning names the file and the channel; channels with signal give none."""
    import logging

    from cellscale.segment.tiles import input_ranges

    rng = np.random.default_rng(0)
    image = np.stack([rng.integers(0, 255, (2, 32, 40)), np.zeros((2, 32, 40), int)], axis=1).astype(np.uint8)
    source = ImageSource.from_array(image, path="movie.tif")
    with caplog.at_level(logging.WARNING, logger="cellscale"):
        input_ranges(source, {"nuclear": 0, "membrane": 1}, ["nuclear", "membrane"])
    assert [r.getMessage() for r in caplog.records] == [
        "movie.tif: the membrane channel (channel 1) holds one value (0) in every pixel read: whole-cell labels are "
        "then outlines guessed from the nuclear channel alone; check the channel index (the sheet's "
        "membrane_channel, cellscale segment's --membrane-channel)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cellscale"):
        input_ranges(source, {"nuclear": 0, "membrane": 0}, ["nuclear", "membrane"])
    assert not caplog.records


def test_a_constant_channel_file_is_named_in_the_warning(tmp_path, caplog):
    """Of an image of one file per channel (a plate reader's A01_w1.TIF|A01_w2.TIF), the warning names the blank
    channel's own file, not the joined list."""
    import logging

    import tifffile

    from cellscale.segment.tiles import input_ranges

    files = [tmp_path / "A01_w1.TIF", tmp_path / "A01_w2.TIF"]
    tifffile.imwrite(files[0], np.random.default_rng(0).integers(0, 255, (32, 40)).astype(np.uint8))
    tifffile.imwrite(files[1], np.zeros((32, 40), np.uint8))
    with ImageSource.open(f"{files[0]}|{files[1]}") as source, caplog.at_level(logging.WARNING, logger="cellscale"):
        input_ranges(source, {"nuclear": 1}, ["nuclear"])
    assert [r.getMessage().split(": the")[0] for r in caplog.records] == [str(files[1])]
