"""Side by side with anomalib: PatchCore fit + predict, RD4AD training throughput, and image AUROC of both.

    pip install -e ".[bench-peers]"
    python benchmarks/peers.py [--backbone resnet18] [--size 224] [--train-images 200] [--coreset 0.1]
                               [--rd-size 128] [--rd-iters 60] [--batch 16]

Both libraries get the same images (built-in synthetic OCT B-scans, decoded and normalised by this
suite once, held in memory), the same backbone with the SAME weights (the suite's encoder, random
unless weights can be had, is copied into anomalib's timm feature extractor), the same sizes,
coreset ratio, memory-bank vector size (anomalib keeps every layer2 + layer3 channel; this suite
projects to ``embed_dim``, set to the same number unless ``--embed-dim`` says otherwise), batch
size, device and number of iterations. anomalib is driven through its torch
models, its loss and the optimiser its Lightning module configures, without the Lightning trainer,
so its figures carry none of a trainer's overhead. The ratio column is anomalib's time / ours
(> 1: this suite is faster). Prints a table and writes benchmarks/results/peers.csv.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from common import InMemory, device_name, imagenet_normalised, in_memory, publish
from sklearn.metrics import roc_auc_score

from medrecontrast import build_detector, get_task
from medrecontrast.data.dataset import task_datasets


def load_images(size: int, train_images: int, test_images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images, test images (pixels in [0, 1]) and test labels, in memory."""
    half = test_images // 2
    data = get_task(
        "synth-oct", size=size, n_train=train_images, n_test_normal=half, n_test_abnormal=test_images - half
    ).load()
    train, test = (in_memory(dataset) for dataset in task_datasets(data, image_size=size, cache="memory"))
    return train.images, test.images, test.labels


def copy_encoder(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Give anomalib's timm feature extractor the suite's encoder weights (same ResNet, other names)."""
    source = {
        name.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): value for name, value in ours.state_dict().items()
    }
    target = theirs.state_dict()
    missing = [name for name in target if name.split("feature_extractor.", 1)[-1] not in source]
    if missing:
        raise RuntimeError(f"anomalib's encoder has weights the suite's lacks: {missing[:5]}")
    theirs.load_state_dict({name: source[name.split("feature_extractor.", 1)[-1]] for name in target})


def batches(images: torch.Tensor, size: int):
    for start in range(0, len(images), size):
        yield images[start : start + size]


def patchcore(args, train: torch.Tensor, test: torch.Tensor, labels: torch.Tensor, device: torch.device) -> list[dict]:
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    theirs = PatchcoreModel(layers=["layer2", "layer3"], backbone=args.backbone, pre_trained=False, num_neighbors=9).to(
        device
    )
    embed_dim = args.embed_dim or sum(theirs.feature_extractor.out_dims)  # anomalib keeps all layer2 + layer3 channels
    ours = build_detector(
        "patchcore",
        backbone=args.backbone,
        pretrained=False,
        coreset_ratio=args.coreset,
        batch_size=args.batch,
        embed_dim=embed_dim,
        device=str(device),
        # anomalib re-weights the image score over 9 neighbours; the released code (our default) does not
        reweight=True,
    )
    copy_encoder(ours.model, theirs.feature_extractor)

    began = time.perf_counter()
    ours.fit(InMemory(train), progress=False)
    our_fit = time.perf_counter() - began
    began = time.perf_counter()
    our_scores = ours.predict(InMemory(test, labels), batch_size=args.batch).scores
    our_predict = time.perf_counter() - began

    began = time.perf_counter()
    theirs.train()
    with torch.no_grad():
        for images in batches(train, args.batch):
            theirs(imagenet_normalised(images).to(device))
    theirs.subsample_embedding(args.coreset)
    their_fit = time.perf_counter() - began
    began = time.perf_counter()
    theirs.eval()
    with torch.no_grad():
        their_scores = torch.cat(
            [
                theirs(imagenet_normalised(images).to(device)).pred_score.flatten().cpu()
                for images in batches(test, args.batch)
            ]
        ).numpy()
    their_predict = time.perf_counter() - began

    common = {
        "workload": f"PatchCore fit {len(train)} + predict {len(test)} images at {args.size} px, coreset "
        f"{args.coreset}, {embed_dim} dims"
    }
    return [
        {**common, "measure": "fit s", "ours": our_fit, "anomalib": their_fit},
        {
            **common,
            "measure": "predict ms/image",
            "ours": 1000 * our_predict / len(test),
            "anomalib": 1000 * their_predict / len(test),
        },
        {**common, "measure": "fit + predict s", "ours": our_fit + our_predict, "anomalib": their_fit + their_predict},
        {
            **common,
            "measure": "image AUROC %",
            "ours": 100 * roc_auc_score(labels, our_scores),
            "anomalib": 100 * roc_auc_score(labels, their_scores),
        },
        {
            **common,
            "measure": "memory bank",
            "ours": ours.memory_bank_.shape[0],
            "anomalib": theirs.memory_bank.shape[0],
        },
    ]


def rd4ad(args, train: torch.Tensor, test: torch.Tensor, labels: torch.Tensor, device: torch.device) -> list[dict]:
    from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
    from anomalib.models.image.reverse_distillation.torch_model import (
        ReverseDistillationModel,
    )

    ours = build_detector(
        "rd4ad",
        backbone=args.backbone,
        pretrained=False,
        iters=args.rd_iters,
        batch_size=args.batch,
        amp=False,
        device=str(device),
    )
    ours.fit(InMemory(train), progress=False)  # first, so the BatchNorm statistics it estimates reach anomalib too
    our_step = statistics.median(ours.training_.iteration_seconds[args.warmup :])
    our_scores = ours.predict(InMemory(test, labels), batch_size=args.batch).scores

    theirs = ReverseDistillationModel(
        args.backbone, (args.rd_size, args.rd_size), ("layer1", "layer2", "layer3"), "add", pre_trained=False
    ).to(device)
    copy_encoder(ours.model.encoder, theirs.encoder)
    loss_fn = ReverseDistillationLoss()
    optimizer = torch.optim.Adam(
        [*theirs.decoder.parameters(), *theirs.bottleneck.parameters()], lr=0.005, betas=(0.5, 0.99)
    )
    order = torch.Generator().manual_seed(0)
    seconds = []
    theirs.train()
    for _ in range(args.rd_iters):
        began = time.perf_counter()
        images = train[torch.randperm(len(train), generator=order)[: args.batch]].to(device)
        optimizer.zero_grad()
        loss = loss_fn(*theirs(imagenet_normalised(images)))
        loss.backward()
        optimizer.step()
        float(loss.detach())
        seconds.append(time.perf_counter() - began)
    their_step = statistics.median(seconds[args.warmup :])
    theirs.eval()
    with torch.no_grad():
        their_scores = torch.cat(
            [
                theirs(imagenet_normalised(images).to(device)).pred_score.flatten().cpu()
                for images in batches(test, args.batch)
            ]
        ).numpy()

    common = {"workload": f"RD4AD training, batch {args.batch} at {args.rd_size} px, {args.rd_iters} iterations"}
    return [
        {**common, "measure": "train s/step", "ours": our_step, "anomalib": their_step},
        {
            **common,
            "measure": "image AUROC %",
            "ours": 100 * roc_auc_score(labels, our_scores),
            "anomalib": 100 * roc_auc_score(labels, their_scores),
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=224, help="PatchCore image side")
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--test-images", type=int, default=60)
    parser.add_argument("--coreset", type=float, default=0.1)
    parser.add_argument(
        "--embed-dim",
        type=int,
        default=None,
        help="our PatchCore's vector size; default anomalib's (all layer2 + layer3 channels)",
    )
    parser.add_argument("--rd-size", type=int, default=128, help="RD4AD image side")
    parser.add_argument("--rd-iters", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3, help="RD4AD iterations left out of the median step time")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--only", choices=["patchcore", "rd4ad"], default=None)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()
    try:
        import anomalib
    except ImportError:
        raise SystemExit("anomalib is not installed: pip install -e '.[bench-peers]'") from None

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    if args.only in (None, "patchcore"):
        rows += patchcore(args, *load_images(args.size, args.train_images, args.test_images), device)
    if args.only in (None, "rd4ad"):
        rows += rd4ad(args, *load_images(args.rd_size, args.train_images, args.test_images), device)
    table = pd.DataFrame(rows)
    table.insert(0, "device", device_name(device))
    table["anomalib / ours"] = (table["anomalib"] / table["ours"]).where(
        table["measure"].str.endswith(("s", "s/step", "ms/image"))
    )
    table["ours"], table["anomalib"] = table["ours"].round(2), table["anomalib"].round(2)
    table["anomalib / ours"] = table["anomalib / ours"].round(2)
    table["versions"] = f"anomalib {anomalib.__version__}, torch {torch.__version__}"
    publish(table, args.results, "peers")


if __name__ == "__main__":
    main()
