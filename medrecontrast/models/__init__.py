"""Detectors: ReContrast, RD4AD and PatchCore behind one interface (see :mod:`.base`)."""

from medrecontrast.models import patchcore, rd4ad, recontrast  # noqa: F401  (register the methods)
from medrecontrast.models.base import DETECTORS, Detector, Predictions, build_detector

__all__ = ["DETECTORS", "Detector", "Predictions", "build_detector"]
