"""MONAI dictionary transforms from a task item to network input.

Two chains, because caching pays only for the expensive part:

``preprocessing`` (deterministic, cached on disk or in memory): read the file (PNG/JPEG, DICOM,
NIfTI; check mask sizes) -> [crop the fundus border] -> empty masks for normals -> resize
(anti-aliased bilinear; masks nearest) -> [centre crop]; stored as float16 in
the source's channels (1 for grey, so a cached OCT scan costs a third of an RGB one).

``network_input`` (cheap, every epoch): grey -> 3 channels. Images stay the cached float16
pixels in [0, 1] (half the bytes of float32 to collate, pin and copy); the encoder normalises them
with ImageNet statistics in its ``forward``, on whatever device it runs
(:class:`~medrecontrast.models.backbones.ResNetEncoder`).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    AsDiscreted,
    CenterSpatialCropd,
    Compose,
    DeleteItemsd,
    EnsureTyped,
    MapTransform,
)

from medrecontrast.data.fundus import crop_fundus
from medrecontrast.data.readers import read_image
from medrecontrast.data.resize import resize_square
from medrecontrast.errors import UserInputError


class ReadImaged(MapTransform):
    """Decode ``image`` (and ``mask``, binarised) with the suite's readers; honours ``slice``/``slice_axis``.

    A mask must have its image's height and width; the error names both files.
    """

    def __init__(self, keys=("image", "mask"), allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key] is None:
                continue
            intensity = d.get("intensity") if key == "image" else None  # masks are binarised, not windowed
            array = read_image(d[key], d.get("slice"), d.get("slice_axis", 2), intensity)
            d[key] = (array.max(axis=0, keepdims=True) > 0).astype(np.float32) if key == "mask" else array
        image, mask = d.get("image"), d.get("mask")
        if isinstance(mask, np.ndarray) and isinstance(image, np.ndarray) and mask.shape[1:] != image.shape[1:]:
            raise UserInputError(
                f"mask {data['mask']} is {mask.shape[1]}x{mask.shape[2]} but its image {data['image']} "
                f"is {image.shape[1]}x{image.shape[2]}; a mask must have its image's height and width."
            )
        return d


class FundusCropd(MapTransform):
    """Crop the black border of fundus photographs to a ``size`` square (see :func:`crop_fundus`)."""

    def __init__(self, keys=("image",), size: int = 512):
        super().__init__(keys)
        self.size = size

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = crop_fundus(d[key], self.size)
        return d


class FillMaskd(MapTransform):
    """Give every image a mask: all zeros where the item has none, and ``mask_known`` (False for an
    abnormal image whose mask file is missing)."""

    def __init__(self, image_key: str = "image", mask_key: str = "mask"):
        super().__init__((mask_key,), allow_missing_keys=True)
        self.image_key, self.mask_key = image_key, mask_key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        # a normal image's mask is all zeros by definition; an abnormal one without its mask file is
        # unknown, and pixel metrics leave it out (metrics.evaluate)
        d["mask_known"] = d.get(self.mask_key) is not None or d.get("label") == 0
        if d.get(self.mask_key) is None:
            d[self.mask_key] = np.zeros((1, *d[self.image_key].shape[1:]), dtype=np.float32)
        return d


class ToThreeChannelsd(MapTransform):
    """Repeat a grey channel three times, for ImageNet backbones."""

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].shape[0] == 1:
                d[key] = d[key].repeat(3, 1, 1) if isinstance(d[key], torch.Tensor) else np.repeat(d[key], 3, axis=0)
        return d


class ResizeSquared(MapTransform):
    """Resize ``image`` (bilinear, anti-aliased) and ``mask`` (nearest) to ``size`` x ``size``.

    Written here rather than MONAI's ``Resized(anti_aliasing=True)`` for speed: MONAI anti-aliases
    with a separable Gaussian convolution before interpolating, 20 of the 28 ms that decoding and
    resizing a 600 x 450 JPEG to 256 px took (benchmarks/README.md, "Test pass on real images");
    :func:`~medrecontrast.data.resize.resize_square` (torch's ``interpolate(antialias=True)``, the
    filter torchvision, PIL and anomalib use; also the fundus crop's) does the same job in ~1 ms.
    """

    def __init__(self, keys=("image", "mask"), size: int = 256):
        super().__init__(keys, allow_missing_keys=True)
        self.size = size

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = resize_square(d[key], self.size, mask=key == "mask")
        return d


def preprocessing(
    image_size: int, crop_size: int | None = None, *, masks: bool = True, fundus_crop: bool = False
) -> Compose:
    """Decode and resize one item; deterministic, so its output can be cached."""
    keys = ("image", "mask") if masks else ("image",)
    steps = [ReadImaged(keys=keys)]
    if fundus_crop:
        steps.append(FundusCropd(size=512))
    steps.append(FillMaskd() if masks else DeleteItemsd(keys="mask"))
    steps.append(ResizeSquared(keys=keys, size=image_size))
    if crop_size and crop_size < image_size:
        steps.append(CenterSpatialCropd(keys=keys, roi_size=(crop_size, crop_size)))
    if masks:
        steps.append(AsDiscreted(keys="mask", threshold=0.5))
    steps.append(
        EnsureTyped(keys=keys, data_type="tensor", dtype=(torch.float16, torch.uint8)[: len(keys)], track_meta=False)
    )
    return Compose(steps)


def network_input(masks: bool = True) -> Compose:
    """Cached tensors -> what a detector takes: float16 RGB pixels in [0, 1] and a float32 mask."""
    steps = [
        EnsureTyped(keys="image", data_type="tensor", dtype=torch.float16, track_meta=False),
        ToThreeChannelsd(keys="image"),
    ]
    if masks:
        steps.insert(1, EnsureTyped(keys="mask", data_type="tensor", dtype=torch.float32, track_meta=False))
    return Compose(steps)
