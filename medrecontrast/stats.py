"""Uncertainty and significance of detection metrics, from per-image scores (and per-image pixel statistics).

Everything here is a pure numpy/scipy function of arrays:

* :func:`bootstrap_counts` draws a *stratified* bootstrap (normals and abnormals resampled separately,
  so every resample keeps the test set's prevalence) as a matrix of per-image counts. One matrix is
  shared by every method and seed of a task, which makes the resamples *paired*: a method's
  difference from another is computed on the same resampled test sets. ``scipy.stats.bootstrap``
  resamples each statistic on its own, so it cannot give paired, seed-averaged, multi-metric
  resamples from one draw; counts times vectorised curves do, for all metrics at once.
* :func:`curve_metrics` computes image AUROC, AP, oracle F1/ACC and the operating points for every
  resample at once from cumulative weighted counts over the sorted scores (exact with ties: the same
  numbers as scikit-learn when every count is 1, tested).
* :func:`delong` is DeLong's structural-components covariance of correlated AUROCs, in the fast
  mid-rank form of Sun & Xu (2014); written here because no maintained package on the registries this
  project uses provides it (scikit-learn and scipy do not). Tested against the brute-force
  Mann–Whitney kernel.
* :func:`holm` is Holm's step-down correction (five lines; statsmodels is not a dependency).

**Patients, not pictures.** Where several images come from one patient (or eye, volume, lesion), they are
not independent, and resampling images makes intervals too narrow and tests too eager. With ``clusters``
(each image's patient), :func:`cluster_bootstrap` resamples *patients* (stratified by whether a patient
has any abnormal image), keeping all of a drawn patient's images, and :func:`delong` uses Obuchowski's
clustered extension of DeLong's variance (Biometrics 1997; for paired AUROCs the same covariance gives a
clustered DeLong test). Both reduce exactly to the image-level methods when every patient has one image
(tested), so a task without patient information loses nothing. Obuchowski's estimator is chosen over a
patient bootstrap of DeLong's statistic because it is closed-form and the standard in the diagnostic
literature (it is what a reader of a clustered ROC analysis expects); the paired patient bootstrap is
reported beside it for every metric, as for images.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

N_BOOTSTRAP = 1000
LEVEL = 0.95
SPECIFICITIES = (0.90, 0.95, 0.99)  # sensitivity is reported at these specificities
SENSITIVITY = 0.95  # specificity is reported at this sensitivity


def bootstrap_counts(labels: np.ndarray, n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``(n_resamples, N)`` int32 counts: how often each image is drawn in each stratified resample."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, len(labels)), dtype=np.int32)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_resamples)
    return counts


def cluster_bootstrap(
    strata: np.ndarray, clusters: np.ndarray, n_resamples: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified bootstrap of clusters (patients): ``(image_counts (B, N), cluster_counts (B, K), clusters
    (K,))``, clusters in order of first appearance. A cluster's stratum is the largest stratum of its images
    (strata ``0``/``1``: whether the patient has any abnormal image; a unified task's ``"<group>0"``/
    ``"<group>1"`` likewise, a patient belonging to one group); each stratum's clusters are resampled with
    replacement to their number, and an image is drawn as often as its cluster. With one image per cluster
    this is :func:`bootstrap_counts` draw for draw."""
    strata, clusters = np.asarray(strata), np.asarray(clusters)
    names, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # clusters in first-appearance order
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    image_cluster = rank[inverse.ravel()]
    cluster_strata = np.empty(len(names), dtype=strata.dtype)
    for index in np.argsort(strata, kind="stable"):  # ascending: each cluster ends with its largest stratum
        cluster_strata[image_cluster[index]] = strata[index]
    cluster_counts = bootstrap_counts(cluster_strata, n_resamples, seed)
    return cluster_counts[:, image_cluster], cluster_counts, names[order]


def reduce_by_cluster(values: np.ndarray, clusters: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``(cluster names in first-appearance order, one value per cluster)``: the ``max``, ``mean`` or ``top<k>``
    (mean of the k largest) of each cluster's values."""
    values, clusters = np.asarray(values, dtype=np.float64), np.asarray(clusters)
    names, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    inverse = inverse.ravel()
    if how == "max":
        out = np.full(len(names), -np.inf)
        np.maximum.at(out, inverse, values)
    elif how == "mean":
        out = np.bincount(inverse, weights=values, minlength=len(names)) / np.bincount(inverse, minlength=len(names))
    elif how.startswith("top") and how[3:].isdigit() and int(how[3:]) >= 1:
        k = int(how[3:])
        out = np.array([np.mean(np.sort(values[inverse == c])[::-1][:k]) for c in range(len(names))])
    else:
        raise ValueError(f"unknown patient score {how!r}; choose max, mean or top<k> (e.g. top3)")
    return names[order], out[order]


def curves(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None):
    """Weighted true- and false-positive counts at every distinct score taken as the threshold
    (``score >= t`` is abnormal), highest threshold first. ``weights`` is ``(B, N)`` (default: ones).
    Returns ``thresholds (T,)``, ``tp (B, T)``, ``fp (B, T)``, ``positives (B,)``, ``negatives (B,)``."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    weights = np.ones((1, len(scores))) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    ends = np.append(np.flatnonzero(np.diff(ordered)), len(ordered) - 1)  # last image of each tie
    w = weights[:, order]
    tp = np.cumsum(w * labels[order], axis=1)[:, ends]
    fp = np.cumsum(w * ~labels[order], axis=1)[:, ends]
    return ordered[ends], tp, fp, tp[:, -1], fp[:, -1]


def curve_metrics(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Image AUROC, AP, oracle F1 and ACC, sensitivity at :data:`SPECIFICITIES` and specificity at
    :data:`SENSITIVITY` (thresholds chosen on these test images: "oracle"), one value per row of ``weights``."""
    _, tp, fp, positives, negatives = curves(labels, scores, weights)
    tpr, fpr = tp / positives[:, None], fp / negatives[:, None]
    zero = np.zeros((len(tp), 1))
    tpr0, fpr0 = np.hstack([zero, tpr]), np.hstack([zero, fpr])
    auroc = np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) / 2, axis=1)
    precision = tp / np.maximum(tp + fp, 1e-300)
    ap = np.sum(np.diff(tpr0, axis=1) * precision, axis=1)
    f1 = 2 * tp / (2 * tp + fp + (positives[:, None] - tp))
    best = np.argmax(f1[:, ::-1], axis=1)  # ties: the lowest threshold, as metrics.oracle_threshold picks it
    best = f1.shape[1] - 1 - best
    rows = np.arange(len(tp))
    out = {
        "image_auroc": auroc,
        "image_ap": ap,
        "f1_oracle": f1[rows, best],
        "acc_oracle": (tp[rows, best] + negatives - fp[rows, best]) / (positives + negatives),
    }
    for specificity in SPECIFICITIES:
        allowed = fpr <= 1 - specificity + 1e-12
        out[f"sens_at_spec{round(specificity * 100)}_oracle"] = np.max(np.where(allowed, tpr, 0.0), axis=1)
    reached = tpr >= SENSITIVITY - 1e-12
    out[f"spec_at_sens{round(SENSITIVITY * 100)}_oracle"] = np.max(np.where(reached, 1 - fpr, 0.0), axis=1)
    return out


def fixed_threshold_metrics(
    labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, F1 and accuracy at one threshold per row of ``weights`` (``thresholds (B,)``)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    weights = np.ones((len(thresholds), len(scores))) if weights is None else np.asarray(weights, dtype=np.float64)
    called = scores[None, :] >= np.asarray(thresholds, dtype=np.float64)[:, None]
    tp, fp = (weights * (called & labels)).sum(1), (weights * (called & ~labels)).sum(1)
    positives, negatives = (weights * labels).sum(1), (weights * ~labels).sum(1)
    return {
        "sensitivity": tp / positives,
        "specificity": 1 - fp / negatives,
        "f1": 2 * tp / np.maximum(tp + fp + positives, 1e-300),
        "acc": (tp + negatives - fp) / (positives + negatives),
    }


def weighted_quantile_rows(values: np.ndarray, weights: np.ndarray, quantile: float) -> np.ndarray:
    """``np.quantile(values repeated by weights, quantile)`` (linear interpolation) for each row of integer
    ``weights``."""
    order = np.argsort(values, kind="stable")
    ordered, w = np.asarray(values, dtype=np.float64)[order], np.asarray(weights)[:, order]
    totals = w.sum(1)
    position = quantile * (totals - 1)  # 0-based position in the expanded, sorted sample
    cumulative = np.cumsum(w, axis=1)
    below = np.floor(position)
    low = np.array([np.searchsorted(c, p, side="right") for c, p in zip(cumulative, below)])
    high = np.array([np.searchsorted(c, p + 1, side="right") for c, p in zip(cumulative, below)])
    high = np.minimum(high, len(ordered) - 1)
    return ordered[low] + (position - below) * (ordered[high] - ordered[low])


def pixel_curve_metrics(stats: dict, weights: np.ndarray, fpr_limit: float = 0.3) -> dict[str, np.ndarray]:
    """Pixel AUROC, pixel AP and dataset-level AUPRO per row of ``weights`` (``(B, N)`` over the test images) from
    per-image pixel statistics (:func:`pixel_statistics`): the images are resampled, never the pixels."""
    w = np.asarray(weights, dtype=np.float64)
    normal_above, abnormal_above = w @ stats["normal_above"], w @ stats["abnormal_above"]
    fpr = normal_above / np.maximum(w @ stats["normal_pixels"], 1)[:, None]
    tpr = abnormal_above / np.maximum(w @ stats["abnormal_pixels"], 1)[:, None]
    pro = (w @ stats["region_overlap"]) / np.maximum(w @ stats["regions"], 1)[:, None]
    zero, one = np.zeros((len(w), 1)), np.ones((len(w), 1))
    # thresholds descend, so the curves rise from (0, 0); close them at (1, 1)
    fpr, tpr, pro = np.hstack([zero, fpr, one]), np.hstack([zero, tpr, one]), np.hstack([zero, pro, one])
    auroc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1)
    # average precision as scikit-learn's step sum: sum over thresholds of (recall gain) x precision
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(abnormal_above / (abnormal_above + normal_above), nan=1.0)
    recall = abnormal_above / np.maximum(w @ stats["abnormal_pixels"], 1)[:, None]
    ap = np.sum(np.diff(np.hstack([zero, recall]), axis=1) * precision, axis=1)
    clipped = np.minimum(fpr, fpr_limit)
    pro_at = [np.interp(np.minimum(c, fpr_limit), f, p) for c, f, p in zip(clipped, fpr, pro)]
    aupro = np.array([np.sum(np.diff(c) * (p[1:] + p[:-1]) / 2) for c, p in zip(clipped, pro_at)]) / fpr_limit
    return {"pixel_auroc": auroc, "pixel_ap": ap, "aupro": aupro}


def pixel_statistics(masks: np.ndarray, maps: np.ndarray, levels: int = 256) -> dict[str, np.ndarray]:
    """Per-image sufficient statistics of the pixel metrics on a common grid of ``levels`` thresholds
    (quantiles of all map values): normal and abnormal pixels at or above each threshold, each image's
    sum over its ground-truth regions (8-connected) of the region's overlap, and its region count.
    Resampling images then only sums rows (:func:`pixel_curve_metrics`); the binning moves pixel
    AUROC and AUPRO by well under a point against the exact values, pixel AP by under one (tested)."""
    from scipy import ndimage

    masks, maps = np.asarray(masks).astype(bool), np.asarray(maps, dtype=np.float32)
    thresholds = np.unique(np.quantile(maps, np.linspace(0, 1, levels)))[::-1]
    n = len(masks)
    out = {key: np.zeros((n, len(thresholds))) for key in ("normal_above", "abnormal_above", "region_overlap")}
    out.update(normal_pixels=np.zeros(n), abnormal_pixels=np.zeros(n), regions=np.zeros(n), thresholds=thresholds)
    eight = np.ones((3, 3), dtype=bool)
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        values = amap.ravel()
        level = np.searchsorted(
            -thresholds, -values, side="left"
        )  # first threshold <= value: values >= thresholds[level:]
        normal, abnormal = ~mask.ravel(), mask.ravel()
        out["normal_above"][i] = np.cumsum(np.bincount(level[normal], minlength=len(thresholds) + 1)[:-1])
        out["abnormal_above"][i] = np.cumsum(np.bincount(level[abnormal], minlength=len(thresholds) + 1)[:-1])
        out["normal_pixels"][i], out["abnormal_pixels"][i] = normal.sum(), abnormal.sum()
        if abnormal.any():
            labelled, count = ndimage.label(mask, structure=eight)
            flat = labelled.ravel()
            sizes = np.bincount(flat, minlength=count + 1)[1:]
            for region in range(1, count + 1):
                inside = flat == region
                out["region_overlap"][i] += (
                    np.cumsum(np.bincount(level[inside], minlength=len(thresholds) + 1)[:-1]) / sizes[region - 1]
                )
            out["regions"][i] = count
    return out


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples`` (NaN-free)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of ``H0: difference = 0`` from paired resampled differences
    (twice the smaller tail, counting the observed sample, so never 0): 1 for identical methods."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0 or np.all(d == 0):
        return 1.0
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    return float(min(1.0, 2 * (tail + 1) / (d.size + 1)))


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and its structural components ``V10`` (one per abnormal image) and ``V01`` (one per normal
    image), by mid-ranks (Sun & Xu 2014): ``V10_i`` is the share of normals scored below abnormal
    ``i`` (ties count ½), ``V01_j`` the share of abnormals scored above normal ``j``."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    positive, negative = scores[labels], scores[~labels]
    m, n = len(positive), len(negative)
    if m == 0 or n == 0:
        raise ValueError("DeLong's AUROC needs both normal and abnormal images")
    combined = sps.rankdata(np.concatenate([positive, negative]))
    v10 = (combined[:m] - sps.rankdata(positive)) / n
    v01 = 1 - (combined[m:] - sps.rankdata(negative)) / m
    return float(v10.mean()), v10, v01


def delong(
    labels: np.ndarray, score_sets: list[np.ndarray], clusters: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of several score vectors on the same images and DeLong's covariance matrix of them.

    A score set may itself be a list of vectors (the seeds of one method): its AUROC is then the mean
    over them, with the mean of their structural components, which is exact for a mean of U-statistics.
    With ``clusters`` (each image's patient), the covariance is Obuchowski's clustered one
    (:func:`obuchowski_covariance`).
    """
    v10s, v01s = [], []
    for scores in score_sets:
        seeds = [scores] if np.ndim(scores[0]) == 0 else list(scores)
        parts = [delong_components(labels, s) for s in seeds]
        v10s.append(np.mean([p[1] for p in parts], axis=0))
        v01s.append(np.mean([p[2] for p in parts], axis=0))
    v10, v01 = np.array(v10s), np.array(v01s)
    aucs = v10.mean(axis=1)
    if clusters is not None:
        return aucs, obuchowski_covariance(np.asarray(labels).astype(bool), v10, v01, np.asarray(clusters))
    covariance = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, covariance


def obuchowski_covariance(labels: np.ndarray, v10: np.ndarray, v01: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Obuchowski's (1997) covariance of AUROCs over clustered data, from the structural components of each
    score set (``v10 (R, M)`` over the abnormal images, ``v01 (R, N)`` over the normal ones, in image order).

    Per cluster k, with m_k abnormal and n_k normal images: ``A_k = sum of v10 over its abnormal images - m_k
    AUC``, ``B_k`` likewise over its normal images; with I clusters, I10 of them with an abnormal image, I01
    with a normal one: ``S10 = I10 / ((I10 - 1) M) sum A A'``, ``S01 = I01 / ((I01 - 1) N) sum B B'``, ``S11 = I /
    (I - 1) sum A B'``, and ``cov = S10 / M + S01 / N + (S11 + S11') / (M N)``. With one image per cluster this is
    DeLong's ``cov(v10) / M + cov(v01) / N``."""
    aucs = v10.mean(axis=1)
    names, inverse = np.unique(clusters, return_inverse=True)
    inverse = inverse.ravel()
    positive, negative = inverse[labels], inverse[~labels]
    k = len(names)
    m_k, n_k = np.bincount(positive, minlength=k), np.bincount(negative, minlength=k)
    a = np.stack([np.bincount(positive, weights=row, minlength=k) for row in v10]) - m_k * aucs[:, None]
    b = np.stack([np.bincount(negative, weights=row, minlength=k) for row in v01]) - n_k * aucs[:, None]
    m, n = int(labels.sum()), int((~labels).sum())
    i10, i01 = int((m_k > 0).sum()), int((n_k > 0).sum())
    s10 = i10 / ((i10 - 1) * m) * (a @ a.T) if i10 > 1 else np.full((len(aucs), len(aucs)), np.nan)
    s01 = i01 / ((i01 - 1) * n) * (b @ b.T) if i01 > 1 else np.full((len(aucs), len(aucs)), np.nan)
    s11 = k / (k - 1) * (a @ b.T)
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def delong_interval(
    labels: np.ndarray, scores, level: float = LEVEL, clusters: np.ndarray | None = None
) -> tuple[float, float, float]:
    """AUROC with DeLong's normal-approximation interval, clipped to [0, 1] (Obuchowski's with ``clusters``)."""
    aucs, covariance = delong(labels, [scores], clusters)
    half = sps.norm.ppf(0.5 + level / 2) * np.sqrt(max(covariance[0, 0], 0.0))
    return float(aucs[0]), float(max(0.0, aucs[0] - half)), float(min(1.0, aucs[0] + half))


def delong_test(labels: np.ndarray, first, second, clusters: np.ndarray | None = None) -> float:
    """Two-sided p-value of DeLong's test that two correlated AUROCs on the same images are equal (with
    ``clusters``: Obuchowski's clustered covariance)."""
    aucs, covariance = delong(labels, [first, second], clusters)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if variance <= 1e-15:
        return 1.0 if np.isclose(aucs[0], aucs[1]) else 0.0
    return float(2 * sps.norm.sf(abs(aucs[0] - aucs[1]) / np.sqrt(variance)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def nemenyi_critical_difference(methods: int, datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks (Demšar 2006), from the studentized range."""
    q = sps.studentized_range.ppf(1 - alpha, methods, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(methods * (methods + 1) / (6 * datasets)))
