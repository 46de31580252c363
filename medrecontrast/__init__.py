"""medrecontrast: unsupervised anomaly detection benchmark for medical images on MONAI + PyTorch.

The public names are imported on first use (PEP 562), so that ``import medrecontrast`` and the
command line's ``--help`` do not pay for torch, MONAI and scikit-learn.
"""

__version__ = "0.1.0"

_LAZY = {
    "build_detector": "medrecontrast.models",
    "expand_tasks": "medrecontrast.tasks",
    "get_task": "medrecontrast.tasks",
}

__all__ = ["__version__", "build_detector", "expand_tasks", "get_task"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medrecontrast' has no attribute {name!r}")
