"""Detectors behind one interface (see :mod:`.base`). Each module of :data:`medrecontrast.catalog.METHOD_MODULES`
registers a method when it is imported here; a new method is one module plus one entry in that table."""

import importlib
import random

# Importing Rich (rich/style.py: getrandbits) and MONAI draws from Python's global random stream; a caller who
# seeded it before importing a detector keeps its draws (the state is restored once every method is imported)
_CALLER_RANDOM_STATE = random.getstate()

from medrecontrast.catalog import METHOD_MODULES  # noqa: E402
from medrecontrast.models.base import (  # noqa: E402
    DETECTORS,
    Detector,
    MethodCard,
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
random.setstate(_CALLER_RANDOM_STATE)
del _CALLER_RANDOM_STATE

__all__ = [
    "DETECTORS",
    "Detector",
    "MethodCard",
    "NotFittedError",
    "Predictions",
    "backbone_of",
    "build_detector",
    "default_methods",
    "display_name",
    "registered_methods",
]
