"""Crop the black border of a fundus photograph (the APTOS preprocessing; docs/tasks.md, "Data protocols")."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medrecontrast.data.resize import resize_square

FUNDUS_THRESHOLD = 30 / 255  # a pixel belongs to the fundus where its channel sum exceeds 30 (of 3 x 255)
FUNDUS_MARGIN = 5
FUNDUS_SIZE = 512


def fundus_box(
    image: np.ndarray, threshold: float = FUNDUS_THRESHOLD, margin: int = FUNDUS_MARGIN
) -> tuple[int, int, int] | None:
    """``(top, left, side)`` of the square around the fundus, or None for an all-dark image.

    The fundus is the largest connected region whose channel sum exceeds ``threshold``; the square
    is centred on its centroid, its side the longer side of its bounding box plus ``margin`` on
    each side.
    """
    bright = image.sum(axis=0) > threshold
    labels, count = ndimage.label(bright)
    if count == 0:
        return None
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, cols = np.nonzero(labels == largest)
    side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) + 2 * margin
    top = int(round(rows.mean() - side / 2))
    left = int(round(cols.mean() - side / 2))
    return top, left, int(side)


def crop_fundus(image: np.ndarray, size: int = FUNDUS_SIZE) -> np.ndarray:
    """Square crop around the fundus (zero-padded where the square leaves the photo), resized to ``size``.

    ``image`` is ``(C, H, W)`` in [0, 1]; an all-dark image is only resized.
    """
    box = fundus_box(image)
    if box is not None:
        top, left, side = box
        square = np.zeros((image.shape[0], side, side), dtype=image.dtype)
        src_top, src_left = max(top, 0), max(left, 0)
        src_bottom, src_right = min(top + side, image.shape[1]), min(left + side, image.shape[2])
        square[:, src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
            :, src_top:src_bottom, src_left:src_right
        ]
        image = square
    return resize_square(image, size).numpy()
