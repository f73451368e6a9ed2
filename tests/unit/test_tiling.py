import numpy as np
import pytest

from cellscale.segment.tiles import blend_weights, n_shards, plan_tiles, read_window


@pytest.mark.parametrize("shape", [(1, 256, 256), (1, 520, 696), (3, 100, 37), (1, 1000, 1300)])
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
    assert len(plan.shards) == n_shards((1, 2048, 2048), 256, 32, 16, 0.5) > 1


def test_small_image_uses_small_window():
    plan = plan_tiles((1, 100, 37), tile=256, overlap=32, multiple=16)
    assert plan.tile == [112, 48]
    assert len(plan.tiles) == 1


def test_read_window_pads_with_zeros():
    image = np.ones((1, 2, 10, 10), np.float32)
    w = read_window(image, 0, 0, 0, 16, 16)
    assert w.shape == (2, 16, 16)
    assert w[:, :10, :10].min() == 1 and w[:, 10:, :].max() == 0


def test_blend_weights_fade_at_edges():
    w = blend_weights(64, 64, 16)
    assert w.min() > 0
    assert w[32, 32] == pytest.approx(1.0)
    assert w[0, 32] < 0.1
