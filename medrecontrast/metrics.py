"""Detection metrics on per-image scores and per-pixel maps (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image-level AUROC and average precision (abnormal = positive)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("image metrics need both normal and abnormal test images")
    return {"image_auroc": float(roc_auc_score(labels, scores)), "image_ap": float(average_precision_score(labels, scores))}


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over all pixels of all test images."""
    return float(roc_auc_score(np.asarray(masks).reshape(-1).astype(np.uint8), np.asarray(maps).reshape(-1)))
