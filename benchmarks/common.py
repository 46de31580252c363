"""What the benchmark scripts share: the device's name, publishing a table, images held in memory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset


def device_name(device: torch.device) -> str:
    """The GPU's model, or the CPU with the threads torch uses: every table says where it was measured."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def publish(table: pd.DataFrame, results: Path, name: str) -> None:
    """Print ``table`` as Markdown (for benchmarks/README.md) and write it to ``results/<name>.csv``."""
    print(table.to_markdown(index=False))
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / f"{name}.csv", index=False)


class InMemory(Dataset):
    """Images (and labels) held as tensors, so that a benchmark times the models, not decoding."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.images[index], "id": str(index)}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item


def in_memory(dataset: Dataset) -> InMemory:
    """A suite dataset's images (pixels in [0, 1], float32) and labels, where it has them, decoded once and stacked."""
    items = [dataset[i] for i in range(len(dataset))]
    labels = torch.tensor([item["label"] for item in items]) if all("label" in item for item in items) else None
    return InMemory(torch.stack([torch.as_tensor(item["image"]).float() for item in items]), labels)


def random_images(count: int, size: int, seed: int = 0) -> InMemory:
    """``count`` random images of pixels in [0, 1], every other one labelled abnormal."""
    return InMemory(
        torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)), torch.arange(count) % 2
    )


def imagenet_normalised(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] normalised as ImageNet backbones expect, for libraries whose models do not do it
    themselves (anomalib's torch models leave it to their pre-processor; the suite's encoder does it)."""
    from medrecontrast.models.backbones import IMAGENET_MEAN, IMAGENET_STD

    mean, std = (
        torch.tensor(values, device=images.device).view(1, 3, 1, 1) for values in (IMAGENET_MEAN, IMAGENET_STD)
    )
    return (images - mean) / std
