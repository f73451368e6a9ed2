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


def _reference_counts(truth, pred, thresholds):
    """The plain definition: a dense IoU matrix from np.unique and the optimal assignment per threshold."""
    from scipy.optimize import linear_sum_assignment

    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    inter = np.zeros((len(t_ids), len(p_ids)))
    np.add.at(inter, (t_inv.ravel(), p_inv.ravel()), 1)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    iou = (inter / np.maximum(union, 1))[np.ix_(t_ids != 0, p_ids != 0)]
    out = []
    for thr in thresholds:
        tp = 0
        if iou.size:
            score = np.where(iou >= thr, iou, 0.0)
            r, c = linear_sum_assignment(-score)
            tp = int((score[r, c] >= thr).sum())
        out.append((tp, iou.shape[1] - tp, iou.shape[0] - tp))
    return out, iou


def test_fast_counts_equal_the_dense_assignment_on_random_and_tied_labels():
    """match_counts and iou_matrix work on the overlapping pairs only (a look-up table instead of a sort,
    no dense matrix for the assignment); they must give what the plain definition gives, also where two
    halves of a cell tie at IoU 0.5, with large or negative label values, and with no background."""
    from cellscale.segment.metrics import DSB_THRESHOLDS, iou_matrix

    rng = np.random.default_rng(3)
    cases = []
    for k in range(40):
        truth = disks([tuple(rng.integers(4, 60, 2)) for _ in range(rng.integers(0, 12))], r=int(rng.integers(3, 9)))
        pred = disks([tuple(rng.integers(4, 60, 2)) for _ in range(rng.integers(0, 12))], r=int(rng.integers(3, 9)))
        if k % 3 == 0:  # the truth's cells, jittered: many matches
            pred = np.roll(truth, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        cases.append((truth, pred))
    half = np.zeros((16, 16), np.int32)
    half[4:12, 4:12] = 1
    halves = half.copy()
    halves[4:12, 8:12] = 2  # two halves: both at IoU exactly 0.5 with the cell
    cases += [(half, halves), (halves, half), (half * 70_000_000, halves - 5), (half + 1, halves + 3)]
    for truth, pred in cases:
        expected, iou = _reference_counts(truth, pred, (0.0, *DSB_THRESHOLDS, 0.3))
        assert match_counts(truth, pred, (0.0, *DSB_THRESHOLDS, 0.3)) == expected
        np.testing.assert_allclose(iou_matrix(truth, pred), iou, rtol=0, atol=1e-12)
