"""Metrics against scikit-learn, against brute-force references and against cases worked by hand."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from medrecontrast.metrics import (
    aupro,
    aupro_per_image,
    holdout_threshold,
    image_metrics,
    oracle_threshold,
    pixel_auroc,
    threshold_metrics,
)


def brute_force_aupro(masks, maps, limit=0.3):
    """Dataset-level AUPRO by sweeping every distinct score as a threshold (slow, obviously right)."""
    from scipy import ndimage

    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, labelled == r) for r in range(1, count + 1)]
    normal = ~masks.astype(bool)
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        detected = maps >= threshold
        fpr = (detected & normal).sum() / normal.sum()
        pro = np.mean([detected[i][region].mean() for i, region in regions])
        points.append((fpr, pro))
    fprs, pros = np.array(points).T
    grid = np.linspace(0, limit, 20001)
    return np.trapezoid(np.interp(grid, fprs, pros), grid) / limit


def test_image_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(size=200) + labels
    assert image_metrics(labels, scores)["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="both normal"):
        image_metrics(np.zeros(5), np.arange(5))


def test_oracle_threshold_maximises_f1_and_matches_sklearn_at_that_threshold():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + 1.5 * labels
    threshold = oracle_threshold(labels, scores)
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    got = threshold_metrics(labels, scores, threshold)
    assert got["f1"] == pytest.approx(best)
    assert got["acc"] == pytest.approx(accuracy_score(labels, scores >= threshold))


def test_threshold_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    # threshold 0.5: predicted abnormal = {0.6, 0.5, 0.9}: tp 2, fp 1, fn 0 -> F1 = 4/5, acc = 4/5
    assert threshold_metrics(labels, scores, 0.5) == pytest.approx({"f1": 0.8, "acc": 0.8})
    assert oracle_threshold(labels, scores) == 0.5


def test_holdout_threshold_is_a_quantile_of_normals_only():
    assert holdout_threshold(np.arange(101.0), 0.95) == pytest.approx(95.0)
    assert holdout_threshold([3.0], 0.95) == 3.0
    with pytest.raises(ValueError):
        holdout_threshold([], 0.95)


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(2)
    masks = rng.random((3, 8, 8)) > 0.8
    maps = rng.random((3, 8, 8)) + masks
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_aupro_perfect_and_hand_computed():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True  # one region of 4 pixels, 12 normal pixels
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    # Two of the region's pixels score highest, then every other pixel ties at 0: the curve goes
    # (0, 0) -> (0, 0.5) -> (1, 1), linear across the tie, so PRO(0.3) = 0.65 and the area up to
    # 0.3 is 0.3 * (0.5 + 0.65) / 2, normalised: 0.575.
    maps = np.zeros((1, 4, 4))
    maps[0, 0, :2] = 1.0
    assert aupro(masks, maps) == pytest.approx(0.575)
    # A map that ranks 3 normal pixels (FPR 0.25) above the region: PRO stays 0 until FPR 0.25, then 1.
    maps = masks[0].astype(float)[None] * 0.5
    maps[0, 3, :3] = 1.0
    assert aupro(masks, maps) == pytest.approx((0.3 - 0.25) / 0.3)


def test_aupro_weighs_regions_not_pixels_and_matches_brute_force():
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 1:9, 1:9] = True  # a large region
    masks[0, 12:14, 12:14] = True  # a small one in the same image
    masks[1, 5:7, 5:7] = True
    rng = np.random.default_rng(3)
    maps = rng.random(masks.shape) + 0.8 * masks
    maps[0, 12:14, 12:14] = 0  # the small region is missed entirely
    assert aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-4)
    assert aupro(masks, maps) < 0.7  # one of three regions missed costs a third, however small it is


def test_aupro_per_image_follows_the_rd4ad_recipe():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    maps = masks.astype(float)
    assert aupro_per_image(masks, maps) == pytest.approx(1.0)
    inverted = 1.0 - maps
    assert aupro_per_image(masks, inverted) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least one image"):
        aupro_per_image(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4)))
