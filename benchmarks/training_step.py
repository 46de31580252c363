"""Seconds per training step of ReContrast and RD4AD, and where they go, on whatever device is present.

    python benchmarks/training_step.py [--backbone resnet18] [--size 64] [--batch 8] [--steps 6]

Each variant times ``--steps`` steps after two warm-up steps on random images (data loading
excluded): the default (fused Adam/AdamW), the per-tensor optimiser loop (``fused`` off), and
channels_last memory format. Also counts the FLOPs of one step (torch's FLOP counter) and reports
the achieved GFLOP/s. Prints a table and writes benchmarks/results/training_step.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from medrecontrast import build_detector
from medrecontrast.engine import fused_optimizer_options


def step_flops(detector, images: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        detector.training_loss(detector.model, images, 0).backward()
    detector.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(detector, images: torch.Tensor, steps: int, fused: bool, channels_last: bool) -> tuple[float, float]:
    """(seconds per step, of which optimiser seconds)."""
    model = detector.model
    if channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizers = detector.make_optimizers()
    if not fused:
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["fused"] = None
    model.train()
    total = optimizer_time = 0.0
    for step in range(steps + 2):
        began = time.perf_counter()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        detector.training_loss(model, images, step).backward()
        stepped = time.perf_counter()
        for optimizer in optimizers.values():
            optimizer.step()
        if detector.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            total += time.perf_counter() - began
            optimizer_time += time.perf_counter() - stepped
    return total / steps, optimizer_time / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    rows = []
    for method in ("recontrast", "rd4ad"):
        images = torch.randn(args.batch, 3, args.size, args.size, device=device)
        flops = step_flops(build_detector(method, backbone=args.backbone, pretrained=False, iters=100, batch_size=args.batch), images)
        variants = [("fused optimiser", True, False), ("per-tensor optimiser", False, False), ("fused + channels_last", True, True)]
        if not fused_optimizer_options(device):
            variants = [v for v in variants if not v[1]]
        for label, fused, channels_last in variants:
            detector = build_detector(method, backbone=args.backbone, pretrained=False, iters=100, batch_size=args.batch)
            seconds, optimizer_seconds = time_steps(detector, images, args.steps, fused, channels_last)
            rows.append({
                "device": name, "method": method, "backbone": args.backbone, "size": args.size, "batch": args.batch, "variant": label,
                "s/step": round(seconds, 3), "optimiser s/step": round(optimizer_seconds, 3), "images/s": round(args.batch / seconds, 1),
                "GFLOP/step": round(flops / 1e9, 1), "GFLOP/s": round(flops / 1e9 / seconds, 1),
            })
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    args.results.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.results / "training_step.csv", index=False)


if __name__ == "__main__":
    main()
