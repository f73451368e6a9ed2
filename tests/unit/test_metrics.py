import numpy as np

from cellscale.segment.metrics import dsb_average_precision, f1_score, match_counts


def disks(centres, shape=(64, 64), r=5):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for i, (y, x) in enumerate(centres, 1):
        out[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i
    return out


def test_identical_labels_score_one():
    a = disks([(10, 10), (30, 30), (50, 12)])
    b = np.where(a > 0, a + 10, 0)  # other ids, same objects
    assert f1_score(a, b) == 1.0
    assert dsb_average_precision(a, b) == 1.0


def test_missing_and_extra_objects():
    truth = disks([(10, 10), (30, 30), (50, 12)])
    pred = disks([(10, 10), (30, 30), (50, 50), (12, 50)])
    tp, fp, fn = match_counts(truth, pred)[0]
    assert (tp, fp, fn) == (2, 2, 1)
    assert f1_score(truth, pred) == 4 / 7


def test_shifted_objects_lose_at_high_iou():
    truth = disks([(20, 20)], r=8)
    pred = disks([(20, 23)], r=8)
    assert f1_score(truth, pred, 0.5) == 1.0
    assert f1_score(truth, pred, 0.9) == 0.0
    assert 0 < dsb_average_precision(truth, pred) < 1


def test_empty_images():
    z = np.zeros((8, 8), np.int32)
    assert f1_score(z, z) == 1.0
    assert f1_score(z, disks([(4, 4)], (8, 8), 2)) == 0.0
