"""The MONAI side: readers, transforms, caching datasets, layout checks."""
