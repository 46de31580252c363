"""medrecontrast: unsupervised anomaly detection benchmark for medical images on MONAI + PyTorch."""

__version__ = "0.1.0"

from medrecontrast.models import build_detector  # noqa: E402  (public API)
from medrecontrast.tasks import expand_tasks, get_task  # noqa: E402

__all__ = ["__version__", "build_detector", "expand_tasks", "get_task"]
