"""The MONAI side: readers, transforms, caching datasets, layout checks, one-off preparation."""

from medrecontrast.data.check import CheckReport, check_task_data
from medrecontrast.data.dataset import image_dataset, task_datasets
from medrecontrast.data.fundus import crop_fundus
from medrecontrast.data.prepare import prepare_aptos
from medrecontrast.data.readers import read_header, read_image
from medrecontrast.data.transforms import normalisation, preprocessing

__all__ = [
    "CheckReport", "check_task_data", "crop_fundus", "image_dataset", "normalisation", "prepare_aptos",
    "preprocessing", "read_header", "read_image", "task_datasets",
]
