"""medrecontrast: unsupervised anomaly detection benchmark for medical images on MONAI + PyTorch."""

__version__ = "0.1.0"

from medrecontrast.tasks import expand_tasks, get_task  # noqa: E402  (public API)

__all__ = ["__version__", "expand_tasks", "get_task"]
