"""MONAI pipelines: shapes, orientation, masks, normalisation and the decode cache."""

import layouts
import numpy as np
import pytest
import torch
from writers import mask, write_dicom, write_png

from medrecontrast.data import readers
from medrecontrast.data.dataset import image_dataset, task_datasets
from medrecontrast.errors import UserInputError
from medrecontrast.models.backbones import IMAGENET_MEAN, IMAGENET_STD, ResNetEncoder
from medrecontrast.tasks import get_task
from medrecontrast.tasks.base import item


def test_grey_dicom_becomes_three_channels_of_pixels(tmp_path):
    """Datasets yield pixels in [0, 1] (float16, as cached); the model normalises (next test)."""
    path = write_dicom(tmp_path / "x.dcm", np.full((10, 14), 4095))
    sample = image_dataset([item(path, 0, "NORMAL")], 8, cache="none", masks=False)[0]
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float16
    torch.testing.assert_close(sample["image"][:, 4, 4].float(), torch.ones(3), atol=2e-3, rtol=0)
    assert "mask" not in sample and not isinstance(sample["image"], type(None))
    assert type(sample["image"]) is torch.Tensor  # plain tensors, no MetaTensor overhead


def test_the_encoder_normalises_with_imagenet_statistics():
    """The encoder's forward normalises pixels itself, in float32 whatever the input dtype: the same
    features as normalising first and feeding an encoder without the step."""
    encoder = ResNetEncoder("resnet18", pretrained=False).eval()
    pixels = torch.rand(2, 3, 32, 32).half()
    normalised = (pixels.float() - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        ours = encoder(pixels)
        by_hand = encoder.layer3(encoder.layer2(encoder.layer1(encoder.stem(normalised))))
    torch.testing.assert_close(ours[2], by_hand)
    assert "mean" not in encoder.state_dict()  # saved models hold learned weights only


def test_orientation_survives_the_pipeline(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:5] = 255  # bright top band of a wide image
    sample = image_dataset([item(write_png(tmp_path / "w.png", pixels), 0, "NORMAL")], 16, cache="none", masks=False)[0]
    rows = sample["image"][0].mean(dim=1)
    assert rows[:3].min() > rows[6:].max()


def test_masks_are_resized_nearest_and_binary(tmp_path):
    image = write_png(tmp_path / "img.png", np.zeros((32, 32, 3), dtype=np.uint8))
    m = write_png(tmp_path / "img_mask.png", (mask(32, 32, box=(8, 8, 16, 16)) > 0).astype(np.uint8) * 3)
    sample = image_dataset([item(image, 1, "DEFECT", m)], 16, cache="none")[0]
    assert sample["mask"].shape == (1, 16, 16)
    assert set(sample["mask"].unique().tolist()) == {0.0, 1.0}
    assert sample["mask"].sum() == 64  # the 16x16 square at half resolution
    normal = image_dataset([item(image, 0, "NORMAL")], 16, cache="none")[0]
    assert normal["mask"].sum() == 0  # normals get an empty mask


def test_centre_crop(tmp_path):
    layouts.isic2018(tmp_path)
    train, test = task_datasets(get_task("isic").load(tmp_path), image_size=32, crop_size=28, cache="none")
    assert train[0]["image"].shape == (3, 28, 28) and len(test) == 3


def test_task_sizes_by_default(tmp_path):
    layouts.isic2018(tmp_path)
    train, _ = task_datasets(get_task("isic").load(tmp_path), cache="none")
    assert train[0]["image"].shape == (3, 224, 224)  # ISIC: resize 256, crop 224


def test_mask_of_another_size_is_refused(tmp_path):
    image = write_png(tmp_path / "img.png", np.zeros((32, 32, 3), dtype=np.uint8))
    m = write_png(tmp_path / "img_mask.png", mask(16, 32))
    with pytest.raises(UserInputError, match="img_mask.png is 16x32 but its image .* is 32x32"):
        image_dataset([item(image, 1, "DEFECT", m)], 8, cache="none")[0]


def test_fundus_crop_in_the_pipeline(tmp_path):
    layouts.aptos(tmp_path, [0, 0, 0, 1], image_size=(40, 60))  # the test set needs a normal and an abnormal
    data = get_task("aptos", n_train=2).load(tmp_path)
    train, _ = task_datasets(data, image_size=16, cache="none")
    assert train[0]["image"].shape == (3, 16, 16)


@pytest.fixture
def decode_counter(monkeypatch):
    calls = []
    original = readers.read_image

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr("medrecontrast.data.transforms.read_image", counting)
    return calls


def test_disk_cache_decodes_each_image_once(tmp_path, decode_counter):
    layouts.mvtec(tmp_path)
    data = get_task("mvtec:bottle").load(tmp_path)
    first, _ = task_datasets(data, image_size=8, cache="disk", cache_root=tmp_path / "cache")
    epoch1 = [first[i]["image"] for i in range(len(first))]
    decoded = len(decode_counter)
    assert decoded == len(first)
    epoch2 = [first[i]["image"] for i in range(len(first))]
    again, _ = task_datasets(data, image_size=8, cache="disk", cache_root=tmp_path / "cache")  # a new run
    epoch3 = [again[i]["image"] for i in range(len(again))]
    assert len(decode_counter) == decoded
    for a, b, c in zip(epoch1, epoch2, epoch3):
        assert torch.equal(a, b) and torch.equal(a, c)
    other_size, _ = task_datasets(data, image_size=12, cache="disk", cache_root=tmp_path / "cache")
    assert other_size[0]["image"].shape[-1] == 12  # a new size is a new cache entry, not a stale one


def test_disk_cache_notices_a_changed_file(tmp_path, decode_counter):
    path = write_png(tmp_path / "a.png", np.zeros((8, 8), dtype=np.uint8))
    records = [item(path, 0, "NORMAL")]
    before = image_dataset(records, 8, cache="disk", cache_root=tmp_path / "c", masks=False)[0]["image"]
    import os
    import time

    write_png(path, np.full((8, 8), 255, dtype=np.uint8))
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    after = image_dataset(records, 8, cache="disk", cache_root=tmp_path / "c", masks=False)[0]["image"]
    assert after.mean() > before.mean()
    assert len(decode_counter) == 2


def test_memory_cache_decodes_each_image_once(tmp_path, decode_counter):
    layouts.mvtec(tmp_path)
    data = get_task("mvtec:bottle").load(tmp_path)
    train, test = task_datasets(data, image_size=8, cache="memory")  # decodes both at construction
    for _ in range(2):
        [train[i] for i in range(len(train))]
        [test[i] for i in range(len(test))]
    files = [it["image"] for it in data.train + data.test] + [it["mask"] for it in data.test if it["mask"]]
    assert sorted(decode_counter) == sorted(files)


def test_unknown_cache_mode():
    with pytest.raises(ValueError, match="cache must be one of"):
        image_dataset([], 8, cache="ram")
