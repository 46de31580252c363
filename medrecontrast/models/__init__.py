"""Detectors behind one interface (see :mod:`.base`). Each import registers a method; a new method
is one module plus one line here."""

from medrecontrast.models import dinomaly, patchcore, rd4ad, recontrast  # noqa: F401  (register the methods)
from medrecontrast.models.base import (
    DETECTORS,
    Detector,
    NotFittedError,
    Predictions,
    backbone_of,
    build_detector,
    default_methods,
    display_name,
    registered_methods,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "NotFittedError",
    "Predictions",
    "backbone_of",
    "build_detector",
    "default_methods",
    "display_name",
    "registered_methods",
]
