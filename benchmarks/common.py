"""What every benchmark script shares: the device's name in a table, and publishing the table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch


def device_name(device: torch.device) -> str:
    """The GPU's model, or the CPU with the threads torch uses: every table says where it was measured."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def publish(table: pd.DataFrame, results: Path, name: str) -> None:
    """Print ``table`` as Markdown (for benchmarks/README.md) and write it to ``results/<name>.csv``."""
    print(table.to_markdown(index=False))
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / f"{name}.csv", index=False)
