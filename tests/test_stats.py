"""Intervals, DeLong, paired tests, operating points and per-subtype AUROC (medrecontrast.stats, bench.statistics)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, roc_auc_score

from medrecontrast import metrics, stats
from medrecontrast.errors import UserInputError
from medrecontrast.sweepfile import check_patient_score


def _simulated(auroc: float, normals: int, abnormals: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Binormal scores with equal variances: AUROC = Φ(d/√2), so d = √2 Φ⁻¹(auroc)."""
    shift = np.sqrt(2) * sps.norm.ppf(auroc)
    labels = np.r_[np.zeros(normals, int), np.ones(abnormals, int)]
    return labels, np.r_[rng.normal(size=normals), rng.normal(shift, size=abnormals)]


def test_bootstrap_interval_covers_the_true_auroc_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    covered_bootstrap = covered_delong = 0
    trials = 200
    for trial in range(trials):
        labels, scores = _simulated(0.8, 60, 40, rng)
        weights = stats.bootstrap_counts(labels, 400, seed=trial)
        low, high = stats.percentile_interval(stats.curve_metrics(labels, scores, weights)["image_auroc"])
        covered_bootstrap += low <= 0.8 <= high
        _, low, high = stats.delong_interval(labels, scores)
        covered_delong += low <= 0.8 <= high
    assert (
        0.88 <= covered_bootstrap / trials <= 0.99
    )  # nominal 0.95; the percentile bootstrap runs a little narrow on 100 images
    assert 0.90 <= covered_delong / trials <= 0.99


def test_stratified_bootstrap_keeps_the_class_sizes():
    labels = np.r_[np.zeros(7, int), np.ones(3, int)]
    counts = stats.bootstrap_counts(labels, 50, seed=1)
    assert (counts[:, labels == 0].sum(1) == 7).all() and (counts[:, labels == 1].sum(1) == 3).all()
    assert not (counts == 1).all()


def test_delong_variance_equals_the_brute_force_structural_components():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(9, int), np.ones(6, int)]
    first = np.round(rng.normal(size=15) + labels, 1)  # rounded: ties must count ½
    second = np.round(rng.normal(size=15) + 0.5 * labels + 0.5 * first, 1)
    aucs, covariance = stats.delong(labels, [first, second])

    def components(scores):
        positive, negative = scores[labels == 1], scores[labels == 0]
        kernel = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
        return kernel.mean(1), kernel.mean(0)

    (a10, a01), (b10, b01) = components(first), components(second)
    brute = np.cov(np.vstack([a10, b10])) / 6 + np.cov(np.vstack([a01, b01])) / 9
    np.testing.assert_allclose(covariance, brute, rtol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(labels, first), roc_auc_score(labels, second)])


def test_delong_of_seeds_is_the_mean_auroc():
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(20, int), np.ones(20, int)]
    seeds = [rng.normal(size=40) + labels for _ in range(3)]
    aucs, _ = stats.delong(labels, [seeds])
    assert aucs[0] == pytest.approx(np.mean([roc_auc_score(labels, s) for s in seeds]))


def test_paired_tests_give_one_for_identical_scores_and_a_small_p_for_different_ones():
    rng = np.random.default_rng(5)
    labels, good = _simulated(0.95, 80, 80, rng)
    _, weak = _simulated(0.6, 80, 80, rng)
    assert stats.delong_test(labels, good, good) == 1.0
    weights = stats.bootstrap_counts(labels, 500, seed=0)
    same = (
        stats.curve_metrics(labels, good, weights)["image_auroc"]
        - stats.curve_metrics(labels, good, weights)["image_auroc"]
    )
    assert stats.paired_p_value(same) == 1.0
    assert stats.delong_test(labels, good, weak) < 1e-4
    differs = (
        stats.curve_metrics(labels, good, weights)["image_auroc"]
        - stats.curve_metrics(labels, weak, weights)["image_auroc"]
    )
    assert stats.paired_p_value(differs) < 0.01


def test_holm_matches_a_hand_worked_case():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])


def test_sensitivity_at_fixed_specificity_on_a_hand_worked_case():
    # 10 normals 0..9 and 5 abnormals. 90 % specificity allows one false positive (normal 9): the lowest
    # such threshold is 8.5, which catches 8.5, 9.5, 12 -> 3/5. 99 % allows none: threshold 9.5 -> 2/5
    labels = np.r_[np.zeros(10, int), np.ones(5, int)]
    scores = np.r_[np.arange(10.0), [2.5, 7.5, 8.5, 9.5, 12.0]]
    result = stats.curve_metrics(labels, scores)
    assert result["sens_at_spec90_oracle"][0] == pytest.approx(3 / 5)
    assert result["sens_at_spec99_oracle"][0] == pytest.approx(2 / 5)
    # 95 % sensitivity needs all 5 abnormals (threshold 2.5): normals 3..9 pass, specificity 3/10
    assert result["spec_at_sens95_oracle"][0] == pytest.approx(3 / 10)
    # a hold-out threshold fixed at 8: abnormals 8.5, 9.5, 12 are caught
    fixed = stats.fixed_threshold_metrics(labels, scores, np.array([8.0]))
    assert fixed["sensitivity"][0] == pytest.approx(3 / 5) and fixed["specificity"][0] == pytest.approx(8 / 10)


def test_curve_metrics_equal_scikit_learn_and_the_suite_metrics_at_unit_weights():
    rng = np.random.default_rng(6)
    labels = np.r_[np.zeros(30, int), np.ones(20, int)]
    scores = np.round(rng.normal(size=50) + labels, 1)
    result = stats.curve_metrics(labels, scores)
    assert result["image_auroc"][0] == pytest.approx(roc_auc_score(labels, scores))
    assert result["image_ap"][0] == pytest.approx(average_precision_score(labels, scores))
    oracle = metrics.threshold_metrics(labels, scores, metrics.oracle_threshold(labels, scores))
    assert result["f1_oracle"][0] == pytest.approx(oracle["f1"]) and result["acc_oracle"][0] == pytest.approx(
        oracle["acc"]
    )


def test_pixel_statistics_give_the_exact_pixel_metrics_within_half_a_point():
    rng = np.random.default_rng(7)
    masks = np.zeros((8, 32, 32), bool)
    masks[4:, 5:12, 5:12] = True
    masks[6, 20:25, 18:30] = True
    maps = rng.random((8, 32, 32)).astype(np.float32) + 0.5 * masks
    binned = stats.pixel_curve_metrics(stats.pixel_statistics(masks, maps), np.ones((1, 8)))
    assert binned["pixel_auroc"][0] == pytest.approx(metrics.pixel_auroc(masks, maps), abs=0.005)
    assert binned["aupro"][0] == pytest.approx(metrics.aupro(masks, maps), abs=0.005)
    assert binned["pixel_ap"][0] == pytest.approx(metrics.pixel_ap(masks, maps), abs=0.01)  # AP: under a point


def test_pixel_ap_is_average_precision_over_every_pixel_and_exact_on_a_coarse_map():
    """The unified scripts' pixel AP (average_precision_score of all pixels); on a map with fewer distinct
    values than the statistics' grid, the resampled value is exact."""
    masks = np.zeros((4, 8, 8), bool)
    masks[2:, 2:5, 2:5] = True
    maps = np.round(np.random.default_rng(1).random((4, 8, 8)) * 10) / 10 + 0.3 * masks
    expected = average_precision_score(masks.reshape(-1), maps.reshape(-1))
    assert metrics.pixel_ap(masks, maps) == pytest.approx(expected)
    binned = stats.pixel_curve_metrics(stats.pixel_statistics(masks, maps), np.ones((1, 4)))
    assert binned["pixel_ap"][0] == pytest.approx(expected, abs=1e-9)
    assert "pixel_ap" in metrics.METRICS


def test_weighted_quantile_equals_numpy_on_the_expanded_sample():
    values = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    weights = np.array([[1, 1, 1, 1, 1], [2, 0, 1, 1, 1], [0, 0, 0, 3, 2]])
    for row, w in enumerate(weights):
        expanded = np.repeat(values, w)
        assert stats.weighted_quantile_rows(values, weights, 0.9)[row] == pytest.approx(np.quantile(expanded, 0.9))


def test_chance_levels():
    assert (
        metrics.chance_level("f1_oracle", 0.5) == pytest.approx(2 / 3)
        and metrics.chance_level("image_auroc", 0.2) == 0.5
    )


def test_patient_bootstrap_and_clustered_delong_equal_the_image_ones_when_every_patient_has_one_image():
    """(a) With one image per patient nothing changes: the same resamples draw for draw, the same DeLong
    variance, interval and test (also for a unified task's strata)."""
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.r_[np.zeros(50, int), np.ones(35, int)])
    first, second = rng.normal(size=85) + labels, rng.normal(size=85) + 0.4 * labels
    patients = np.array([f"patient-{i}" for i in rng.permutation(85)])
    for strata in (labels, np.char.add(np.where(np.arange(85) % 2, "a", "b"), labels.astype(str))):
        image_counts, patient_counts, names = stats.cluster_bootstrap(strata, patients, 300, seed=7)
        assert np.array_equal(image_counts, stats.bootstrap_counts(strata, 300, seed=7))
        assert np.array_equal(patient_counts, image_counts) and list(names) == list(patients)
    aucs, covariance = stats.delong(labels, [first, second])
    clustered_aucs, clustered = stats.delong(labels, [first, second], patients)
    assert np.array_equal(aucs, clustered_aucs)
    np.testing.assert_allclose(clustered, covariance, rtol=1e-12)
    assert stats.delong_interval(labels, first, clusters=patients) == pytest.approx(
        stats.delong_interval(labels, first), rel=1e-12
    )
    assert stats.delong_test(labels, first, second, patients) == pytest.approx(
        stats.delong_test(labels, first, second), rel=1e-12
    )


def test_patient_intervals_cover_clustered_truth_and_image_intervals_do_not():
    """(b) Five images per patient with within-patient correlation 0.6: the patient bootstrap and Obuchowski's
    clustered DeLong cover the true AUROC about 95 % of the time, the image bootstrap and plain DeLong far less
    (benchmarks/patient_coverage.py gives the full table in benchmarks/README.md)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from patient_coverage import coverage

    row = coverage(patients=40, images=5, rho=0.6, trials=150, resamples=300, seed=1)
    assert row["patient_bootstrap coverage"] >= 0.88 and row["obuchowski coverage"] >= 0.88
    assert row["image_bootstrap coverage"] <= 0.80 and row["delong coverage"] <= 0.80
    assert row["patient_bootstrap width"] > 1.4 * row["image_bootstrap width"]


def test_patient_scores_reduce_by_max_mean_and_top_k():
    names, scores = stats.reduce_by_cluster(np.array([1.0, 5.0, 2.0, 4.0, 3.0]), np.array(list("abaab")), "max")
    assert list(names) == ["a", "b"] and list(scores) == [4.0, 5.0]
    assert list(stats.reduce_by_cluster(np.array([1.0, 5.0, 2.0, 4.0, 3.0]), np.array(list("abaab")), "mean")[1]) == [
        pytest.approx(7 / 3),
        4.0,
    ]
    assert list(stats.reduce_by_cluster(np.array([1.0, 5.0, 2.0, 4.0]), np.array(list("abaa")), "top2")[1]) == [
        3.0,
        5.0,
    ]
    with pytest.raises(UserInputError, match="patient_score"):
        check_patient_score("median")
