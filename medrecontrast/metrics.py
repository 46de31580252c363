"""Detection metrics on per-image scores and per-pixel maps (numpy and scikit-learn underneath).

Abnormal is the positive class everywhere. Two threshold regimes are kept apart on purpose:
``oracle`` thresholds are chosen on the test labels (what the papers' code reports; optimistic),
``holdout`` thresholds are fixed from scores of held-out normal training images, without any test
label, as a deployed detector would have to.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)

FPR_LIMIT = 0.3
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # regions as the MVTec AD evaluation defines them
THRESHOLD_QUANTILE = 0.95  # of the held-out normals' scores: the label-free threshold

# The one list of metric columns: what `evaluate` returns, what results.csv holds, what tables and
# figures show (with these labels, in this order) and what notebooks and tests read.
METRICS = {
    "image_auroc": "I-AUROC",
    "image_ap": "I-AP",
    "f1_oracle": "F1 (oracle)",
    "acc_oracle": "ACC (oracle)",
    "f1_holdout": "F1 (hold-out)",
    "acc_holdout": "ACC (hold-out)",
    "pixel_auroc": "P-AUROC",
    "pixel_ap": "P-AP",
    "aupro": "AUPRO",
    "aupro_per_image": "AUPRO (per image)",
}
# Clinical operating points and the threshold gap, computed from the stored scores by the report's
# statistics step (medrecontrast.bench.statistics): a compact table of their own, not the main table's.
OPERATING_POINTS = {
    "sens_at_spec90_oracle": "Sens@90%Spec (oracle)",
    "sens_at_spec95_oracle": "Sens@95%Spec (oracle)",
    "sens_at_spec99_oracle": "Sens@99%Spec (oracle)",
    "spec_at_sens95_oracle": "Spec@95%Sens (oracle)",
    "sens_at_spec90_holdout": "Sens@90%Spec (hold-out)",
    "sens_at_spec95_holdout": "Sens@95%Spec (hold-out)",
    "sens_at_spec99_holdout": "Sens@99%Spec (hold-out)",
    "threshold_gap": "F1 gap (oracle − hold-out)",
}
THRESHOLDS = ("threshold_oracle", "threshold_holdout")


def chance_level(metric: str, prevalence: float) -> float | None:
    """What a detector without any skill reaches on a metric, for abnormal prevalence ``prevalence``
    (None where no single level applies): AUROC ½; AP the prevalence; oracle F1 2p/(1+p) and oracle
    accuracy max(p, 1-p), reached by calling every image one class; AUPRO up to FPR 0.3 of a random
    map 0.15 (its PRO equals its FPR)."""
    return {
        "image_auroc": 0.5,
        "pixel_auroc": 0.5,
        "image_ap": prevalence,
        "f1_oracle": 2 * prevalence / (1 + prevalence),
        "acc_oracle": max(prevalence, 1 - prevalence),
        "aupro": FPR_LIMIT / 2,
    }.get(metric)  # the score thresholds behind the F1/ACC columns


PER_CLASS = "per_class"  # unified tasks: the same metrics for each member task
MASKS_MISSING = "masks_missing"  # abnormal test images without a mask, left out of the pixel metrics


def evaluate(
    predictions, holdout_scores: np.ndarray | None = None, quantile: float = THRESHOLD_QUANTILE, groups=None
) -> dict:
    """Every metric of a test set's ``predictions`` (``labels``, ``scores`` and, with pixel masks,
    ``masks`` and ``maps``), as one dict keyed by :data:`METRICS` and :data:`THRESHOLDS`.

    A pure function: no files, no model. ``holdout_scores`` (scores of held-out normal training
    images, or None) fix the label-free threshold at their ``quantile``. ``groups`` (the member task
    of each test image of a unified task) gives each member's metrics under ``per_class`` and their
    mean at the top level, as the unified scripts report the class mean.
    """
    labels, scores = np.asarray(predictions.labels), np.asarray(predictions.scores)
    masks, maps = getattr(predictions, "masks", None), getattr(predictions, "maps", None)
    # pixel metrics only on the images whose masks are known (an abnormal image may lack its mask)
    known = getattr(predictions, "mask_known", None)
    known = np.ones(len(labels), bool) if known is None else np.asarray(known, bool)
    missing = int((~known).sum()) if masks is not None else 0
    if missing:
        warnings.warn(
            f"{missing} abnormal test image(s) have no mask: pixel AUROC and AUPRO use the other {int(known.sum())} "
            "images",
            stacklevel=2,
        )
    if groups is None:
        metrics = _metrics_of(labels, scores, masks, maps, holdout_scores, quantile, np.ones(len(labels), bool), known)
        return check_metric_keys({**metrics, MASKS_MISSING: missing} if missing else metrics)
    groups = np.asarray(groups)
    per_class = {
        str(g): _metrics_of(labels, scores, masks, maps, holdout_scores, quantile, groups == g, known)
        for g in dict.fromkeys(groups.tolist())
    }
    shared = [k for k in METRICS if all(k in m for m in per_class.values())]
    metrics = {**{k: float(np.mean([m[k] for m in per_class.values()])) for k in shared}, PER_CLASS: per_class}
    return check_metric_keys({**metrics, MASKS_MISSING: missing} if missing else metrics)


def check_metric_keys(metrics: dict, where: str = "metrics") -> dict:
    """``metrics`` unchanged if every key is a known metric (or threshold, ``per_class``, ``timings``); else an
    error."""
    unknown = sorted(
        set(metrics) - set(METRICS) - set(THRESHOLDS) - {PER_CLASS, MASKS_MISSING, "timings", "evaluation"}
    )
    if unknown:
        raise ValueError(
            f"{where}: unknown metric(s) {', '.join(unknown)}; the metrics are {', '.join(METRICS)} "
            "(medrecontrast.metrics.METRICS)"
        )
    return metrics


def _metrics_of(
    labels, scores, masks, maps, holdout_scores, quantile: float, rows: np.ndarray, known: np.ndarray
) -> dict:
    """Every metric of the test images selected by the boolean ``rows``; the pixel metrics use those
    of them whose mask is ``known``."""
    chosen, chosen_scores = labels[rows], scores[rows]
    metrics = image_metrics(chosen, chosen_scores)
    oracle = oracle_threshold(chosen, chosen_scores)
    metrics.update(
        {f"{k}_oracle": v for k, v in threshold_metrics(chosen, chosen_scores, oracle).items()}, threshold_oracle=oracle
    )
    if holdout_scores is not None:
        fixed = holdout_threshold(holdout_scores, quantile)
        metrics.update(
            {f"{k}_holdout": v for k, v in threshold_metrics(chosen, chosen_scores, fixed).items()},
            threshold_holdout=fixed,
        )
    if masks is not None:
        pixel_rows = rows & known
        masks, maps, pixel_labels = masks[pixel_rows], maps[pixel_rows], labels[pixel_rows]
        if masks.any():
            metrics.update(
                pixel_auroc=pixel_auroc(masks, maps), pixel_ap=pixel_ap(masks, maps), aupro=aupro(masks, maps)
            )
            metrics["aupro_per_image"] = aupro_per_image(masks[pixel_labels == 1], maps[pixel_labels == 1])
    return metrics


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image-level AUROC and average precision."""
    labels = _binary_labels(labels)
    return {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_ap": float(average_precision_score(labels, scores)),
    }


def oracle_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on these labels (``score >= threshold`` is abnormal)."""
    precision, recall, thresholds = precision_recall_curve(_binary_labels(labels), scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return float(thresholds[np.argmax(f1[:-1])])


def holdout_threshold(normal_scores: np.ndarray, quantile: float = 0.95) -> float:
    """A threshold fixed without test labels: a high quantile of held-out normal images' scores."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    if normal_scores.size == 0:
        raise ValueError("a hold-out threshold needs at least one held-out normal score")
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    return float(np.quantile(normal_scores, quantile))


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """F1 and accuracy when images scoring ``>= threshold`` are called abnormal."""
    labels = _binary_labels(labels)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {"f1": float(f1_score(labels, predicted, zero_division=0)), "acc": float(accuracy_score(labels, predicted))}


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over all pixels of all test images."""
    return float(roc_auc_score(np.asarray(masks).reshape(-1).astype(np.uint8), np.asarray(maps).reshape(-1)))


def pixel_ap(masks: np.ndarray, maps: np.ndarray) -> float:
    """Average precision over all pixels of all test images, as the unified scripts report it per class
    (ReContrast ``utils.py`` ``evaluation_batch``: ``average_precision_score`` of the flattened masks and maps)."""
    return float(average_precision_score(np.asarray(masks).reshape(-1).astype(np.uint8), np.asarray(maps).reshape(-1)))


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """Dataset-level area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    The standard MVTec AD definition: every connected ground-truth region (8-connected) of every
    image weighs the same; the false positive rate counts all normal pixels of the dataset; the PRO
    curve is integrated exactly over all thresholds (no sampling) and divided by ``fpr_limit``.
    """
    masks, maps = np.asarray(masks).astype(bool), np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"masks and maps must both be (N, H, W), got {masks.shape} and {maps.shape}")
    regions = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for index, mask in enumerate(masks):
        labelled, found = ndimage.label(mask, structure=EIGHT_CONNECTED)
        regions[index] = np.where(labelled > 0, labelled + count, 0)
        count += found
    normal_pixels = int((~masks).sum())
    if count == 0 or normal_pixels == 0:
        raise ValueError("AUPRO needs at least one anomalous region and one normal pixel")
    sizes = np.bincount(regions.reshape(-1), minlength=count + 1).astype(np.float64)
    flat_regions, flat_scores = regions.reshape(-1), maps.reshape(-1)
    # Each pixel's contribution when the threshold falls below its score.
    fpr_step = np.where(flat_regions == 0, 1.0 / normal_pixels, 0.0)
    pro_step = np.where(flat_regions > 0, 1.0 / (count * sizes[flat_regions]), 0.0)
    order = np.argsort(-flat_scores, kind="stable")
    fprs, pros = np.cumsum(fpr_step[order]), np.cumsum(pro_step[order])
    # Pixels with equal scores switch together: keep the curve point after the last of each tie.
    last_of_tie = np.append(np.diff(flat_scores[order]) != 0, True)
    fprs, pros = np.concatenate([[0.0], fprs[last_of_tie]]), np.concatenate([[0.0], pros[last_of_tie]])
    return _area_up_to(fprs, pros, fpr_limit) / fpr_limit


def aupro_per_image(
    masks: np.ndarray, maps: np.ndarray, fpr_limit: float = FPR_LIMIT, num_thresholds: int = 200
) -> float:
    """AUPRO computed on each image with a mask separately and averaged, as the RD4AD/ReContrast code does.

    Per image: ``num_thresholds`` thresholds evenly spaced from the map's minimum (inclusive) to its
    maximum (exclusive), as ``np.arange`` gives them in that code; points
    with FPR below ``fpr_limit`` kept, their FPR rescaled to [0, 1] by its largest value, trapezoidal
    area. Not comparable with :func:`aupro`; reported separately and labelled.
    """
    values = aupro_image_values(masks, maps, fpr_limit, num_thresholds)
    if np.isnan(values).all():
        raise ValueError("per-image AUPRO needs at least one image with both anomalous and normal pixels")
    return float(np.nanmean(values))


def aupro_image_values(
    masks: np.ndarray, maps: np.ndarray, fpr_limit: float = FPR_LIMIT, num_thresholds: int = 200
) -> np.ndarray:
    """Each image's AUPRO as :func:`aupro_per_image` averages them; NaN for an image whose mask is
    all normal or all anomalous (no curve)."""
    masks, maps = np.asarray(masks).astype(bool), np.asarray(maps, dtype=np.float64)
    return np.array(
        [
            _aupro_one_image(mask, amap, fpr_limit, num_thresholds) if mask.any() and not mask.all() else np.nan
            for mask, amap in zip(masks, maps)
        ],
        dtype=np.float64,
    )


def _aupro_one_image(mask: np.ndarray, amap: np.ndarray, fpr_limit: float, num_thresholds: int) -> float:
    labelled, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    region_sizes = np.bincount(labelled.reshape(-1), minlength=count + 1)[1:]
    fprs, pros = [], []
    for threshold in amap.min() + np.arange(num_thresholds) * (amap.max() - amap.min()) / num_thresholds:
        detected = amap > threshold
        overlap = np.bincount(labelled[detected], minlength=count + 1)[1:]
        pros.append(float(np.mean(overlap / region_sizes)))
        fprs.append(float((detected & ~mask).sum() / (~mask).sum()))
    fprs, pros = np.asarray(fprs), np.asarray(pros)
    keep = fprs < fpr_limit
    if keep.sum() < 2 or fprs[keep].max() == 0:
        return float(pros[keep].mean()) if keep.any() else 0.0
    fprs, pros = fprs[keep] / fprs[keep].max(), pros[keep]
    return float(auc(fprs, pros))


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under the monotone curve (x, y) from 0 to ``limit``, interpolating at the limit."""
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    if xs[-1] < limit and inside.sum() < len(x):
        following = np.argmax(~inside)
        x0, x1, y0, y1 = x[following - 1], x[following], y[following - 1], y[following]
        xs, ys = np.append(xs, limit), np.append(ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return float(auc(xs, ys))


def _binary_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).astype(int)
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError("image metrics need both normal (0) and abnormal (1) test images")
    return labels
