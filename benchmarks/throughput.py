"""Training and inference throughput and peak memory per method, backbone and precision, on whatever device is present.

    python benchmarks/throughput.py [--methods recontrast rd4ad patchcore] [--backbones resnet18 wide_resnet50_2]
                                    [--size 256] [--batch 16] [--steps 8] [--variants fp32 bf16] [--compile]
    python benchmarks/throughput.py --methods dinomaly --encoders dinov2_vitb14_reg --size 392

A method whose network option is not ``backbone`` (Dinomaly's ``encoder``) takes ``--encoders`` instead of
``--backbones``.

Training runs through the suite's own loop (``Detector.fit``: loader, autocast, channels_last,
fused optimisers, optional torch.compile) on random images held in memory, so data decoding is
excluded (``data_pipeline.py`` measures that); the step time is the median of the iterations after
the warm-up. PatchCore's "training" is its fit (feature extraction + coreset) on ``--fit-images``.
Inference is ``Detector.predict`` (scores and full-size maps). One ReContrast/RD4AD step's FLOPs are
counted by torch's FLOP counter; the achieved rate is compared with the peak of this device
measured here by a large bf16 (and fp32) matrix product.

Variants: ``fp32`` = fp32, NCHW (the official code's regime); ``bf16`` = bf16 autocast with fp32
losses, channels_last on CUDA; ``bf16+compile`` adds torch.compile (with ``--compile``). Prints a
table and writes benchmarks/results/throughput.csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from common import device_name, publish, random_images
from torch.utils.flop_counter import FlopCounterMode

from medrecontrast import build_detector
from medrecontrast.models import DETECTORS
from medrecontrast.resources import peak_memory

VARIANTS = {
    "fp32": dict(amp=False, channels_last=False),
    "bf16": dict(amp="bf16", channels_last=None),
    "bf16+compile": dict(amp="bf16", channels_last=None, compile=True),
}


def measured_peak_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Dense matrix-product throughput: the practical peak the model's FLOPs are compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    _sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - began) / 1e12


def network_option(method: str, network: str) -> dict:
    """``{"backbone": network}``, or the method's own network option (Dinomaly: ``encoder``)."""
    return {DETECTORS[method].backbone_option: network}


def training_step_flops(method: str, backbone: str, size: int, batch: int, device: torch.device) -> float:
    detector = build_detector(
        method, **network_option(method, backbone), pretrained=False, device=str(device), amp=False, iters=1
    )  # FLOPs of one step
    images = torch.randn(batch, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        detector.training_loss(detector.model, images, 0).backward()
    return counter.get_total_flops()


def measure(method: str, backbone: str, variant: str, args, device: torch.device) -> dict:
    options = dict(**network_option(method, backbone), pretrained=False, device=str(device), **VARIANTS[variant])
    if method == "patchcore":
        options.pop("channels_last")
        options.pop("compile", None)
        detector = build_detector(method, **options, batch_size=args.batch, coreset_ratio=0.01)
        train = random_images(args.fit_images, args.size)
        with peak_memory(device) as train_memory:
            began = time.perf_counter()
            detector.fit(train, progress=False)
            train_seconds = time.perf_counter() - began
        train_rate = len(train) / train_seconds
    else:
        iters = args.warmup + args.steps
        if "calibrate_random_encoder" in {f.name for f in dataclasses.fields(DETECTORS[method].Config)}:
            options["calibrate_random_encoder"] = False  # the BatchNorm pass over random images is not training
        detector = build_detector(method, **options, iters=iters, batch_size=args.batch)
        train = random_images(args.batch * iters, args.size)
        with peak_memory(device) as train_memory:
            detector.fit(train, progress=False)
        step = statistics.median(detector.training_.iteration_seconds[args.warmup :])
        train_rate = args.batch / step
    test = random_images(args.test_images, args.size, seed=1)
    detector.predict(random_images(args.batch, args.size, seed=2), batch_size=args.batch)  # warm-up (kernels, compile)
    _sync(device)
    with peak_memory(device) as test_memory:
        began = time.perf_counter()
        detector.predict(test, batch_size=args.batch)
        _sync(device)
        inference_rate = len(test) / (time.perf_counter() - began)
    return {
        "train images/s": round(train_rate, 1),
        "train peak MB": round(train_memory["peak_memory_mb"]),
        "inference images/s": round(inference_rate, 1),
        "inference peak MB": round(test_memory["peak_memory_mb"]),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["recontrast", "rd4ad", "patchcore"])
    parser.add_argument("--backbones", nargs="+", default=["wide_resnet50_2"])
    parser.add_argument("--encoders", nargs="+", default=["dinov2_vitb14_reg"], help="Dinomaly's encoders")
    parser.add_argument(
        "--size", type=int, default=256, help="image side (the paper's 256; PatchCore's 224 crop is close)"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed training iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fit-images", type=int, default=64, help="PatchCore training images")
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument(
        "--variants", nargs="+", default=None, help=f"of {', '.join(VARIANTS)}; default fp32 (+ bf16 on CUDA)"
    )
    parser.add_argument("--compile", action="store_true", help="also the bf16+compile variant")
    parser.add_argument("--peak-size", type=int, default=None, help="matrix side for the peak measurement")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    name = device_name(device)
    variants = args.variants or (["fp32", "bf16"] if cuda else ["fp32"])
    if args.compile:
        variants.append("bf16+compile")
    peak_size = args.peak_size or (8192 if cuda else 2048)
    peaks = {
        dtype: measured_peak_tflops(device, getattr(torch, dtype), peak_size, 20 if cuda else 3)
        for dtype in ("bfloat16", "float32")
    }
    print(
        f"{name}: measured matmul peak bf16 {peaks['bfloat16']:.3g} TFLOP/s, fp32 {peaks['float32']:.3g} TFLOP/s",
        flush=True,
    )

    rows = []
    for method in args.methods:
        networks = args.backbones if DETECTORS[method].backbone_option == "backbone" else args.encoders
        for backbone in networks:
            flops = (
                None if method == "patchcore" else training_step_flops(method, backbone, args.size, args.batch, device)
            )
            for variant in variants:
                row = {
                    "device": name,
                    "method": method,
                    "backbone": backbone,
                    "size": args.size,
                    "batch": args.batch,
                    "variant": variant,
                }
                row.update(measure(method, backbone, variant, args, device))
                if flops is not None:
                    achieved = flops / (args.batch / row["train images/s"]) / 1e12
                    peak = peaks["bfloat16" if variant.startswith("bf16") else "float32"]
                    row.update(
                        {
                            "GFLOP/step": round(flops / 1e9, 1),
                            "TFLOP/s": round(achieved, 3),
                            "peak TFLOP/s": round(peak, 3),
                            "of peak %": round(100 * achieved / peak, 1),
                        }
                    )
                rows.append(row)
                print(row, flush=True)
    table = pd.DataFrame(rows)
    publish(table, args.results, "throughput")


if __name__ == "__main__":
    main()
