"""Detectors behind one interface (see :mod:`.base`). Each module of :data:`medrecontrast.catalog.METHOD_MODULES`
registers a method when it is imported here; a new method is one module plus one entry in that table."""

import importlib

from medrecontrast.catalog import METHOD_MODULES
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

for _module in METHOD_MODULES.values():  # registers each built-in method
    importlib.import_module(_module)

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
