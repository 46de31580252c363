"""PatchCore (Roth et al., CVPR 2022): a memory bank of normal patch features, nearest-neighbour scoring.

As amazon-science/patchcore-inspection (``src/patchcore/patchcore.py``, ``common.py``) runs it:
images resized to 256 and centre-cropped to 224 (the run's sizes, see :data:`PAPER_SIZES`);
patch features from the frozen encoder's layer2 and layer3: each layer unfolded into 3x3
neighbourhoods (``PatchMaker.patchify``: zero padding 1, each patch a ``C*9`` vector, channel
major), layer3's unfolded patches bilinearly upsampled to layer2's grid, each layer's ``C*9`` vector
adaptively average-pooled to ``embed_dim`` (``MeanMapper``: the pooling windows straddle channels
and neighbourhood offsets, so this is not a 3x3 mean followed by a channel pooling), and the two
pooled again to ``embed_dim`` (``Aggregator``).

The memory bank is the released one (``sampler.py`` ``ApproximateGreedyCoresetSampler``): the
approximate greedy k-center coreset over EVERY patch of every training image, distances on a random
projection to ``projection_dim`` dimensions (``torch.nn.Linear``'s default initialisation), started
from the mean distance to ``num_starting_points`` points drawn by NumPy, ``int(N * coreset_ratio)``
entries; for a seed the suite draws what ``fix_seeds(seed)`` followed *directly* by the sampler draws (tested
against the released sampler's indices). The released ``bin/run_patchcore.py`` builds the backbone between
the two, which consumes the global torch stream, so its projection for a seed is another draw: in the full
released pipeline the banks overlap ~15 % with this suite's for the same seed, about as much as the released
code's own seed-0 and seed-1 banks overlap (~18 %; both figures from issue 37). Features, the greedy set on
the same projected features and start points, and the scores given the same bank are identical.

At OCT2017's size (26,315 images x 784 patches, ~84 GB of
1024-d embeddings in float32) the embeddings cannot all be held, so the bank is built in two passes
within ``memory_budget_gb`` (:func:`plan_memory_bank`): the first keeps only each patch's 128-d
projection (~10.6 GB) for the greedy search, the second runs the encoder again over the images that
hold the selected patches and keeps their embeddings. The two passes select exactly what one pass
selects (tested). Where even the projections do not fit, the run is refused when the sweep is
planned, with the numbers. ``candidate_ratio < 1`` (an explicit option, named in the report) draws
that random fraction of each image's patches as candidates instead.

Scoring (``NearestNeighbourScorer``): a patch's score is faiss ``IndexFlatL2``'s distance, i.e.
the SQUARED Euclidean distance, to its nearest memory-bank entry, averaged over the
``num_neighbors`` nearest when more than one (the released scripts use 1); the map is upsampled to
the input (bilinear) and smoothed with σ = 4; the image score is the largest patch score, with no
re-weighting. ``reweight = true`` applies the paper's eq. 7 softmax re-weighting over the
``reweight_neighbors`` memory-bank neighbours (anomalib: 9) of the worst patch's nearest entry.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from medrecontrast.compute import (
    autocast,
    batch_to_device,
    check_engineering_options,
    loader_options,
    resolve_device,
    seed_everything,
    to_channels_last,
    uses_channels_last,
)
from medrecontrast.errors import UserInputError, check_field_types, require_positive_ints
from medrecontrast.models.anomaly_map import gaussian_blur
from medrecontrast.models.backbones import build_encoder
from medrecontrast.models.base import BMAD_TABLE2, Detector, MethodCard, register_detector, state_bytes
from medrecontrast.progress import tracked

PATCH_REDUCTIONS = (8, 16)  # the released code's layer2 + layer3 of a ResNet
PAPER_SIZES = {"image_size": 256, "crop_size": 224}  # patchcore-inspection: --resize 256 --imagesize 224
FLOAT_BYTES = 4
BUDGET_USABLE = 0.8  # of the memory budget, for the planned arrays; the rest is headroom for temporaries


@dataclass(kw_only=True)
class PatchCoreConfig:
    backbone: str = "wide_resnet50_2"
    pretrained: bool = True
    weights: str | None = None
    patch_size: int = 3
    embed_dim: int = 1024
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    num_starting_points: int = 10
    num_neighbors: int = 1  # patch score: mean squared distance to this many nearest entries (released scripts: 1)
    reweight: bool = False  # the paper's softmax re-weighting of the image score (not in the released code)
    reweight_neighbors: int = 9  # its support set (anomalib's 9)
    sigma: float = 4.0
    # host memory for building the bank: every patch's embedding (one pass) or only its projection (two
    # passes), and the coreset search on the CPU; a bank that cannot fit is refused when the sweep is planned
    memory_budget_gb: float = 16.0
    gpu_memory_budget_gb: float | None = None  # accelerator memory for the coreset search; None: what is free at fit
    # fraction of each image's patches drawn at random as coreset candidates: 1 = every patch (the released
    # code); below 1 the bank is not the paper's, and the report says so
    candidate_ratio: float = 1.0
    batch_size: int = 16
    knn: str = "auto"  # "auto" (faiss on the CPU when installed), "faiss" or "torch"
    seed: int = 0
    device: str = "auto"
    amp: bool | str = True  # feature extraction in bf16: True on CUDA, "bf16" on every device, False never
    num_workers: int | None = None  # None: 0 on the CPU, up to 8 loader processes beside a GPU

    def __post_init__(self):
        check_field_types(self)
        if self.knn not in ("auto", "faiss", "torch"):
            raise UserInputError(f"knn must be 'auto', 'faiss' or 'torch', got {self.knn!r}")
        if not 0 < self.candidate_ratio <= 1:
            raise UserInputError(f"candidate_ratio must be in (0, 1], got {self.candidate_ratio}")
        if not 0 < self.coreset_ratio <= 1:
            raise UserInputError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        require_positive_ints(
            self,
            "patch_size",
            "embed_dim",
            "projection_dim",
            "num_starting_points",
            "num_neighbors",
            "reweight_neighbors",
            "batch_size",
        )
        check_engineering_options(self)
        if self.patch_size % 2 == 0:
            raise UserInputError(
                f"patch_size must be odd (the released PatchMaker pads (p - 1) / 2), got {self.patch_size}"
            )


# BMAD's Table 2 (DorisBao/BMAD imgs/table.png, commit 146a04c), mean of BMAD's runs in percent, keyed by this
# suite's tasks for its benchmarks (PRO: anomalib's dataset-level AUPRO)
PAPER_RESULTS = {
    "bmad:brain": {"image_auroc": 91.55, "pixel_auroc": 96.97, "aupro": 85.83},
    "bmad:liver": {"image_auroc": 60.40, "pixel_auroc": 96.58, "aupro": 87.35},
    "bmad:retina": {"image_auroc": 91.50, "pixel_auroc": 96.39, "aupro": 85.73},
    "bmad:oct": {"image_auroc": 98.56},
    "bmad:chest": {"image_auroc": 75.17},
    "bmad:histopathology": {"image_auroc": 69.34},
}


@register_detector("patchcore")
class PatchCore(Detector):
    Config = PatchCoreConfig
    card = MethodCard(
        paper_results=PAPER_RESULTS,
        paper_sources=dict.fromkeys(PAPER_RESULTS, BMAD_TABLE2),
        display_name="PatchCore",
        citation=(
            "Roth et al., Towards total recall in industrial anomaly detection, CVPR 2022; "
            "code github.com/amazon-science/patchcore-inspection"
        ),
        order=2,
        # demo: the released 10 % coreset (the built-in tasks' ~14 k patches at 128 px); lite: the paper's 1 % coreset
        # ("PatchCore-1%"), whose greedy search is a tenth of the 10 % one's on ~550 k patches of 700 images at 224 px;
        # tiny: a smaller memory-bank vector for seconds on a CPU
        profile_options={"demo": {"coreset_ratio": 0.1}, "lite": {"coreset_ratio": 0.01}, "tiny": {"embed_dim": 256}},
        profile_sizes={"paper": PAPER_SIZES},
    )
    # the exported graph's nearest-neighbour search is |q|^2 - 2 q.b + |b|^2 in float32 (faiss computes the same
    # expansion in another order), whose rounding is relative to |q|^2, not to the small distance it leaves: measured
    # up to 3e-5 of the largest score (docs/export.md)
    export_tolerance = {"score": 1e-3, "map": 1e-3}

    def construct(self) -> None:
        c = self.config
        self.model = (
            build_encoder(c.backbone, pretrained=c.pretrained, weights=c.weights)
            .requires_grad_(False)
            .eval()
            .to(self.device)
        )
        self.memory_bank_: torch.Tensor | None = None
        self._index: NearestNeighbourIndex | None = None
        self._projections_cache: dict = {}

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, h*w, embed_dim)`` locally aggregated patch features and their grid ``(h, w)`` (layer2's)."""
        if uses_channels_last(images.device, self.config.amp, None, inference=True):
            images = to_channels_last(self.model, images)
        with autocast(images.device, self.config.amp):
            levels = self.model(images)
        # the levels at strides 8 and 16 (a ResNet's layer2 and layer3; a timm CNN's first two)
        f2, f3 = (levels[self.model.reductions.index(r)] for r in PATCH_REDUCTIONS)
        f2, f3 = f2.float(), f3.float()
        batch, (h, w) = f2.shape[0], f2.shape[-2:]
        (columns2, band2), (columns3, band3) = self._projections(f2.shape[1], f3.shape[1], f2.device)
        p = self.config.patch_size
        # Each layer's unfolded (C*p*p) patches pooled by its sparse pooling matrix: MeanMapper and the
        # layer's half of the Aggregator in one step. Both are linear over channels and the bilinear
        # upsampling is linear over positions, so layer3 is pooled first and upsampled after (the
        # released code upsamples the C*9 unfolded maps: the same numbers, 9x the work).
        low = band3(F.unfold(f3, p, padding=(p - 1) // 2)).reshape(batch, -1, *f3.shape[-2:])
        low = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).flatten(2)
        features = f2.new_zeros(batch, self.config.embed_dim, h * w)
        features.index_add_(1, columns2, band2(F.unfold(f2, p, padding=(p - 1) // 2)))
        features.index_add_(1, columns3, low)
        return features.transpose(1, 2).contiguous(), (h, w)

    def _projections(self, channels2: int, channels3: int, device: torch.device) -> tuple[tuple, tuple]:
        """The released code's projection as one sparse pooling per layer over the unfolded ``C*p*p``
        patch vectors: each layer adaptively average-pooled to ``embed_dim`` (``MeanMapper``), the two
        stacked and pooled again to ``embed_dim`` (``Aggregator``). All poolings are linear, so each
        layer's share is one matrix ``P`` with ``x2 @ P2 + x3 @ P3`` equal to them; each column of ``P``
        averages a short window of rows, so it is applied as a sparse product (:class:`SparsePooling`)
        rather than a dense one or ``adaptive_avg_pool1d`` (benchmarks/README.md, "Decisions measured in the code")."""
        key = (channels2, channels3, device)
        if key not in self._projections_cache:
            matrices = pooling_matrices(channels2, channels3, self.config.embed_dim, self.config.patch_size)
            self._projections_cache[key] = tuple(SparsePooling.of(m, device) for m in matrices)
        return self._projections_cache[key]

    @classmethod
    def notes(cls, options: dict) -> list[str]:
        """A bank drawn from a random part of each image's patches is not the paper's: say so."""
        ratio = float(options.get("candidate_ratio", 1.0))
        if ratio >= 1:
            return []
        return [
            f"{cls.card.display_name}: memory bank selected from a random {ratio:.0%} of each training image's patches "
            f"(candidate_ratio = {ratio}), not from every patch as in the released code."
        ]

    @classmethod
    def check_plan(cls, config: PatchCoreConfig, *, train_images: int, input_size: int) -> None:
        """Refuse, when the sweep is planned, a memory bank whose coreset search cannot fit the host budget
        (:func:`plan_memory_bank`). On a GPU the search runs there, so only the host's share is checked now
        (the accelerator's free memory is known at fit, where its share is checked)."""
        side = -(-input_size // PATCH_REDUCTIONS[0])
        on_gpu = resolve_device(config.device).type == "cuda"
        plan_memory_bank(
            train_images,
            side * side,
            config.embed_dim,
            config.coreset_ratio,
            config.projection_dim,
            int(config.memory_budget_gb * 2**30),
            2**62 if on_gpu else None,
            config.candidate_ratio,
        )

    @classmethod
    def storage_estimate(cls, config: PatchCoreConfig, *, train_images: int, input_size: int) -> dict:
        """model.pt: the encoder and the memory bank (``int(candidates * coreset_ratio)`` float32 rows); no
        checkpoint (a fit does not iterate)."""
        side = -(-input_size // PATCH_REDUCTIONS[0])
        candidates = int(train_images * side * side * config.candidate_ratio)
        bank = int(candidates * config.coreset_ratio) * config.embed_dim * 4
        encoder = state_bytes(lambda: build_encoder(config.backbone, pretrained=False))["model"]
        return {"model": encoder + bank, "checkpoint": 0}

    def fit(self, train: Dataset, *, checkpoint=None, resume: bool = False, progress: bool = True) -> "PatchCore":
        """Build the memory bank from ``train`` (one or two passes over it, :func:`plan_memory_bank`). A fit
        has no iterations, so there is no training state to checkpoint: ``checkpoint`` is unused and
        ``resume`` refits from the start."""
        c = self.config
        seed_everything(c.seed)

        passes = []

        def features(indices: Sequence[int] | None) -> Iterable[torch.Tensor]:
            images = train if indices is None else Subset(train, list(indices))
            loader = DataLoader(images, batch_size=c.batch_size, **loader_options(self.device, c.num_workers))
            passes.append(len(images))
            what = "patch features" if len(passes) == 1 else "features of the images holding the selected patches"
            for batch in tracked(loader, len(images), what, progress, count=lambda b: len(b["image"])):
                yield self.patch_features(batch_to_device(batch["image"], self.device))[0]

        self._index = None
        self.memory_bank_, self.stats_ = build_memory_bank(
            features,
            len(train),
            budget_bytes=int(c.memory_budget_gb * 2**30),
            coreset_ratio=c.coreset_ratio,
            projection_dim=c.projection_dim,
            num_starting_points=c.num_starting_points,
            seed=c.seed,
            device=self.device,
            candidate_ratio=c.candidate_ratio,
            device_budget_bytes=self.device_budget_bytes(),
            progress=progress,
        )
        if progress:
            stats = self.stats_
            print(
                f"  memory bank: {stats.get('memory_bank')} of {stats.get('candidates')} patches "
                f"({stats.get('passes')} pass(es) over the images)",
                file=sys.stderr,
            )
        self.images_seen_ = len(train)
        self.fitted_ = True
        return self

    def device_budget_bytes(self) -> int | None:
        """The accelerator memory the coreset search may plan for (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        if self.config.gpu_memory_budget_gb is not None:
            return int(self.config.gpu_memory_budget_gb * 2**30)
        free, _ = torch.cuda.mem_get_info(self.device)
        return free

    @torch.no_grad()
    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory_bank_ is None:
            raise RuntimeError("PatchCore.fit must run before scoring")  # score_batch called directly
        features, (h, w) = self.patch_features(images)
        batch = features.shape[0]
        if self._index is None:
            self._index = NearestNeighbourIndex(self.memory_bank_, self.config.knn)
        k = min(self.config.num_neighbors, self.memory_bank_.shape[0])
        squared, nearest = self._index.search(features.reshape(-1, features.shape[-1]), k=k)
        patch_scores = squared.mean(dim=1).reshape(batch, h * w)
        maps = F.interpolate(
            patch_scores.reshape(batch, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        maps = gaussian_blur(maps, self.config.sigma)
        return self.image_scores(features, patch_scores, nearest[:, 0].reshape(batch, h * w)), maps[:, 0]

    def image_scores(self, features: torch.Tensor, patch_scores: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
        """The largest patch score (``PatchMaker.score``); with ``reweight``, scaled by how typical
        the worst patch's nearest memory entry is (paper, eq. 7)."""
        rows = torch.arange(features.shape[0], device=features.device)
        worst = patch_scores.argmax(dim=1)
        score = patch_scores[rows, worst]
        k = min(self.config.reweight_neighbors, self.memory_bank_.shape[0])
        if not self.config.reweight or k <= 1:
            return score
        anchor = self.memory_bank_[nearest[rows, worst]]
        _, support = self._index.search(anchor, k=k)
        distances = torch.linalg.vector_norm(features[rows, worst][:, None, :] - self.memory_bank_[support], dim=-1)
        weights = 1 - torch.softmax(distances, dim=1)[:, 0]
        return weights * score

    def scoring_module(self, amp: bool | str = False) -> "PatchCoreScorer":
        """Pixels in [0, 1] -> ``(scores, maps)`` as one graph for export: the sparse poolings as dense matrices and
        the nearest-neighbour search as a matrix product and top-k over the memory bank (the same numbers as
        :meth:`_score_batch`'s faiss or chunked search, up to float rounding; export measures the difference).
        Refused where the bank is larger than :data:`MAX_EXPORT_BANK_BYTES`."""
        if self.memory_bank_ is None:
            raise RuntimeError("PatchCore.fit must run before export")
        bank_bytes = self.memory_bank_.numel() * FLOAT_BYTES
        if bank_bytes > MAX_EXPORT_BANK_BYTES:
            raise UserInputError(
                f"PatchCore's memory bank is {_size(bank_bytes)}B ({self.memory_bank_.shape[0]:,} x "
                f"{self.memory_bank_.shape[1]} floats); an exported graph holds at most "
                f"{_size(MAX_EXPORT_BANK_BYTES)}B "
                "of it (ONNX keeps a graph in one 2 GB protobuf): fit with a smaller coreset_ratio or embed_dim"
            )
        return PatchCoreScorer(self)

    def state_dict(self) -> dict:
        return {"encoder": self.model.state_dict(), "memory_bank": self.memory_bank_.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["encoder"])
        self.memory_bank_ = state["memory_bank"].to(self.device)
        self._index = None


# the largest memory bank an exported graph holds: ONNX stores a graph in one protobuf of at most 2 GB, beside the
# encoder's weights (WRN50-2: 270 MB) and the pooling matrices
MAX_EXPORT_BANK_BYTES = 1 << 30


class PatchCoreScorer(nn.Module):
    """``forward(images) -> (scores, maps)`` of a fitted PatchCore as plain tensor operations (exportable): the
    encoder's stride-8 and stride-16 levels, each layer's 3 x 3 patches pooled by its dense pooling matrix
    (:meth:`PatchCore._projections` as one product; layer3 pooled, then upsampled), the squared distance to every
    memory-bank row as ``|q|^2 - 2 q.b + |b|^2`` and its ``num_neighbors`` smallest, the patch-score map upsampled,
    blurred, and the image score (with ``reweight``, eq. 7 of the paper)."""

    def __init__(self, detector: "PatchCore"):
        super().__init__()
        c = detector.config
        self.encoder = detector.model.eval()
        self.level2 = self.encoder.reductions.index(PATCH_REDUCTIONS[0])
        self.level3 = self.encoder.reductions.index(PATCH_REDUCTIONS[1])
        self.patch_size, self.embed_dim, self.sigma = c.patch_size, c.embed_dim, c.sigma
        bank = detector.memory_bank_.float()
        self.k = min(c.num_neighbors, bank.shape[0])
        self.reweight_k = min(c.reweight_neighbors, bank.shape[0]) if c.reweight else 1
        self.register_buffer("bank", bank)
        self.register_buffer("bank_norms", (bank * bank).sum(dim=1))
        # the dense (C*p*p, embed_dim) pooling matrix of each level (PatchCore._projections applies them sparsely)
        channels2, channels3 = self.encoder.channels[self.level2], self.encoder.channels[self.level3]
        pool2, pool3 = pooling_matrices(channels2, channels3, self.embed_dim, self.patch_size)
        self.register_buffer("pool2", pool2.to(bank.device))
        self.register_buffer("pool3", pool3.to(bank.device))

    def nearest(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices of each query's ``k`` nearest bank rows, in one product (no chunks: the
        batch is a graph input)."""
        return nearest_rows(queries, self.bank, self.bank_norms, k)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = self.encoder(images)
        f2, f3 = levels[self.level2].float(), levels[self.level3].float()
        batch, (h, w) = f2.shape[0], f2.shape[-2:]
        p = self.patch_size
        low = (F.unfold(f3, p, padding=(p - 1) // 2).transpose(1, 2) @ self.pool3).transpose(1, 2)
        low = F.interpolate(low.reshape(batch, -1, *f3.shape[-2:]), size=(h, w), mode="bilinear", align_corners=False)
        features = F.unfold(f2, p, padding=(p - 1) // 2).transpose(1, 2) @ self.pool2 + low.flatten(2).transpose(1, 2)
        squared, nearest = self.nearest(features.reshape(-1, self.embed_dim), self.k)
        patch_scores = squared.mean(dim=1).reshape(batch, h * w)
        maps = F.interpolate(
            patch_scores.reshape(batch, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        maps = gaussian_blur(maps, self.sigma)
        worst = patch_scores.argmax(dim=1, keepdim=True)
        score = patch_scores.gather(1, worst)[:, 0]
        if self.reweight_k <= 1:
            return score, maps[:, 0]
        worst_feature = features.gather(1, worst[:, :, None].expand(-1, 1, self.embed_dim))[:, 0]
        anchor = self.bank[nearest[:, 0].reshape(batch, h * w).gather(1, worst)[:, 0]]
        _, support = self.nearest(anchor, self.reweight_k)
        distances = torch.linalg.vector_norm(worst_feature[:, None, :] - self.bank[support], dim=-1)
        return (1 - torch.softmax(distances, dim=1)[:, 0]) * score, maps[:, 0]


def pooling_matrices(channels2: int, channels3: int, embed_dim: int, patch_size: int) -> tuple[torch.Tensor, ...]:
    """The ``(C*p*p, embed_dim)`` matrix of each level's unfolded patches: its ``MeanMapper`` pooling times its half
    of the ``Aggregator`` pooling (:meth:`PatchCore._projections`)."""
    area = patch_size**2
    merge = adaptive_pool_matrix(2 * embed_dim, embed_dim)
    return tuple(
        adaptive_pool_matrix(c * area, embed_dim) @ m
        for c, m in ((channels2, merge[:embed_dim]), (channels3, merge[embed_dim:]))
    )


def adaptive_pool_matrix(in_features: int, out_features: int) -> torch.Tensor:
    """``(in, out)`` matrix ``P`` with ``x @ P == adaptive_avg_pool1d(x, out)`` (torch's windows:
    output ``j`` averages inputs ``floor(j*in/out)`` to ``ceil((j+1)*in/out)``)."""
    matrix = torch.zeros(in_features, out_features, dtype=torch.float64)
    for j in range(out_features):
        start, end = (j * in_features) // out_features, -(-((j + 1) * in_features) // out_features)
        matrix[start:end, j] = 1.0 / (end - start)
    return matrix.float()


class SparsePooling:
    """``x @ P`` over dim 1 of ``(B, K, L)`` tensors for a pooling matrix ``P`` (``K x D``) that is
    almost all zeros (each column averages a short window of rows), as one sparse (CSR) product per
    image over ``P``'s non-zero columns, faster on the CPU than gathering the windows or the dense
    product (benchmarks/README.md, "Decisions measured in the code")."""

    def __init__(self, transposed: torch.Tensor):
        self.transposed = transposed  # (non-zero columns, K), sparse CSR

    @classmethod
    def of(cls, matrix: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, "SparsePooling"]:
        """``(columns, pooling)``: the non-zero columns of ``matrix`` and the pooling that yields them."""
        columns = torch.nonzero(matrix.abs().sum(dim=0)).flatten()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": only constructing and multiplying is used
            warnings.simplefilter("ignore", UserWarning)
            transposed = matrix[:, columns].t().contiguous().to(device).to_sparse_csr()
        return columns.to(device), cls(transposed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transposed @ image for image in x])


# --- memory bank ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankPlan:
    """How a memory bank is built within the memory budgets (:func:`plan_memory_bank`).

    ``per_image`` patches of each image are coreset candidates (all of them unless ``candidate_ratio < 1``
    asks for a random fraction); ``target`` of them form the bank. With ``passes == 1`` every candidate's
    full embedding is kept while the greedy search runs (what the released code does); with
    ``passes == 2`` only their ``projection_dim``-d random projections are kept for the search, and the
    encoder runs again over the images that hold the selected patches to recompute their embeddings.
    """

    num_images: int
    patches: int
    dim: int
    per_image: int
    target: int
    passes: int
    host_bytes: int

    @property
    def candidates(self) -> int:
        return self.num_images * self.per_image


def plan_memory_bank(
    num_images: int,
    patches: int,
    dim: int,
    coreset_ratio: float,
    projection_dim: int,
    host_budget: int,
    device_budget: int | None = None,
    candidate_ratio: float = 1.0,
) -> BankPlan:
    """The memory plan of a bank over ``num_images`` images of ``patches`` patches of ``dim`` floats.

    The greedy coreset runs over every patch of every image, as patchcore-inspection's
    ``ApproximateGreedyCoresetSampler`` does (``sampler.py``: the bank is ``int(N * percentage)`` of
    all N patches). One pass when every candidate's embedding fits ``host_budget`` beside the search,
    else two passes (projections only, then the selected patches recomputed). Where even the
    projections do not fit, a :class:`UserInputError` gives the numbers: the bank is never silently
    drawn from a random subset. ``device_budget`` (an accelerator's) bounds the search's share there.
    ``BUDGET_USABLE`` of each budget is planned, the rest is headroom for temporaries.
    """
    per_image = patches if candidate_ratio >= 1 else max(1, math.ceil(candidate_ratio * patches))
    candidates = num_images * per_image
    # sampler.py: num_coreset_samples = int(len(features) * percentage) over every patch (floor)
    target = min(candidates, max(1, int(coreset_ratio * num_images * patches)))
    bank = FLOAT_BYTES * dim * target
    search = FLOAT_BYTES * (projection_dim + 2) * candidates  # the projections and two distance vectors
    # one pass keeps every candidate's embedding beside its projection (sampler.py: none when D == 128,
    # the projections are then the embeddings)
    embeddings = FLOAT_BYTES * dim * candidates if projection_dim != dim else 0
    host_usable = int(host_budget * BUDGET_USABLE)
    on_host = device_budget is None
    host = {2: bank + (search if on_host else 0)}
    host[1] = host[2] + embeddings
    passes = 1 if host[1] <= host_usable else 2
    what = (
        f"PatchCore's coreset over all {candidates:,} patches of {num_images:,} images ({per_image} per image)"
        if candidate_ratio >= 1
        else f"PatchCore's coreset over {candidates:,} candidate patches ({per_image} per image, candidate_ratio "
        f"{candidate_ratio})"
    )
    subsample = (
        f"or set candidate_ratio below {candidate_ratio} (a random part of each image's patches; the bank is then "
        "not the paper's)"
    )
    if host[passes] > host_usable:
        raise UserInputError(
            f"{what} needs {_size(host[2])} of host memory even with projections to {projection_dim} dimensions "
            f"only ({_size(search)} for the search, {_size(bank)} for the bank of {target:,}); "
            f"memory_budget_gb allows {_size(host_usable)} ({BUDGET_USABLE:.0%} of it). Raise memory_budget_gb to at "
            f"least {math.ceil(host[2] / BUDGET_USABLE / 2**30)} {subsample}."
        )
    if device_budget is not None and search + bank > int(device_budget * BUDGET_USABLE):
        raise UserInputError(
            f"{what} needs {_size(search + bank)} on the accelerator ({_size(search)} for the "
            f"search, {_size(bank)} for the bank) and gpu_memory_budget_gb allows "
            f"{_size(device_budget * BUDGET_USABLE)}; raise gpu_memory_budget_gb {subsample}."
        )
    return BankPlan(
        num_images=num_images,
        patches=patches,
        dim=dim,
        per_image=per_image,
        target=target,
        passes=passes,
        host_bytes=host[passes],
    )


def _size(count: float) -> str:
    """Bytes as a person reads them: GiB from 1 GiB up, else MiB."""
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def released_projection(dim: int, projection_dim: int, seed: int) -> torch.Tensor | None:
    """The coreset's random projection as patchcore-inspection draws it (``sampler.py``
    ``_reduce_features``): the weight ``(projection_dim, dim)`` of ``torch.nn.Linear(dim, projection_dim,
    bias=False)`` with PyTorch's default initialisation (Kaiming-uniform, a = √5: uniform in ±1/√dim),
    drawn as ``torch.manual_seed(seed)`` would draw it (here from a private generator, so the caller's
    stream is untouched). None where ``dim == projection_dim`` (the released sampler does not project)."""
    if dim == projection_dim:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.init.kaiming_uniform_(torch.empty(projection_dim, dim), a=math.sqrt(5), generator=generator)


FeatureStream = Callable[[Sequence[int] | None], Iterable[torch.Tensor]]


def build_memory_bank(
    features: FeatureStream | Iterable[torch.Tensor],
    num_images: int,
    *,
    budget_bytes: int,
    coreset_ratio: float = 0.1,
    projection_dim: int = 128,
    num_starting_points: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    candidate_ratio: float = 1.0,
    device_budget_bytes: int | None = None,
    progress: bool | int = False,
) -> tuple[torch.Tensor, dict]:
    """A coreset memory bank (on ``device``) from streamed ``(B, P, D)`` patch-feature batches.

    ``features(None)`` yields every image's batch in order and ``features(indices)`` those of the
    given images (sorted), so a second pass can recompute the selected patches; a plain iterable of
    batches serves plans of one pass. The plan (:func:`plan_memory_bank`) is fixed before the first
    batch is stored, so memory never grows past it. The random draws are the released sampler's for
    ``seed`` (:func:`released_projection`, :func:`greedy_coreset`). Returns the bank ``(M, D)`` in
    selection order and the statistics of the plan. ``progress`` reports the coreset search's steps
    (:func:`medrecontrast.progress.tracked`): on a CPU it is the longest stage of the fit.
    """
    device = torch.device(device)
    on_accelerator = device.type != "cpu"
    stream = features if callable(features) else (lambda indices: features)
    subsample = torch.Generator().manual_seed(seed)
    began = time.perf_counter()
    plan = projected = candidates = chosen_patches = weight = None
    stored = 0
    for batch in stream(None):
        if plan is None:
            patches, dim = batch.shape[1:]
            plan = plan_memory_bank(
                num_images,
                patches,
                dim,
                coreset_ratio,
                projection_dim,
                budget_bytes,
                device_budget_bytes if on_accelerator else None,
                candidate_ratio,
            )
            if plan.passes == 2 and not callable(features):
                raise ValueError("a two-pass memory bank needs features as a callable of image indices")
            weight = released_projection(dim, projection_dim, seed)
            weight = None if weight is None else weight.to(device)
            # Projections live where the search runs. Host arrays are pageable, never pinned: torch's pinned
            # allocator rounds every request up to a power of two (a 13.6 GB array took 16 GB on an H100).
            projected = torch.empty((plan.candidates, projection_dim), dtype=torch.float32, device=device)
            if plan.passes == 1 and weight is not None:
                candidates = torch.empty((plan.candidates, dim), dtype=torch.float32)
            if plan.per_image < patches:
                chosen_patches = torch.empty((num_images, plan.per_image), dtype=torch.long)
        batch = batch.float()
        if plan.per_image < patches:
            picks = torch.stack([torch.randperm(patches, generator=subsample)[: plan.per_image] for _ in batch])
            chosen_patches[stored // plan.per_image : stored // plan.per_image + len(batch)] = picks
            batch = torch.gather(batch, 1, picks.to(batch.device)[:, :, None].expand(-1, -1, batch.shape[2]))
        rows = batch.reshape(-1, batch.shape[-1])
        end = stored + rows.shape[0]
        if end > plan.candidates:
            raise ValueError(f"the feature stream holds more than the {num_images} images announced")
        if weight is None:
            projected[stored:end].copy_(rows)
        else:
            projected[stored:end].copy_(rows.to(device) @ weight.T)  # sampler.py: mapper(features)
            if candidates is not None:
                candidates[stored:end].copy_(rows)
        stored = end
    if plan is None:
        raise UserInputError("cannot fit PatchCore on an empty training set")
    if stored != plan.candidates:
        raise ValueError(f"the feature stream held {stored // plan.per_image} images, not the {num_images} announced")
    streamed = time.perf_counter()
    selected = greedy_coreset(projected, plan.target, num_starting_points, seed, progress=progress).cpu()
    searched = time.perf_counter()
    if weight is None and plan.passes == 1:  # dim == projection_dim: the projections are the embeddings
        candidates = projected.cpu()
    del projected
    stats = {
        "patches_per_image": plan.patches,
        "candidates_per_image": plan.per_image,
        "candidates": plan.candidates,
        "memory_bank": plan.target,
        "passes": plan.passes,
        "pass_1_s": round(streamed - began, 3),
        "search_s": round(searched - streamed, 3),
    }
    if plan.passes == 1:
        return candidates[selected].to(device), stats
    bank = _recompute_selected(stream, selected, plan, chosen_patches).to(device)
    stats["pass_2_s"] = round(time.perf_counter() - searched, 3)
    return bank, stats


def _recompute_selected(
    stream: FeatureStream, selected: torch.Tensor, plan: BankPlan, chosen_patches: torch.Tensor | None
) -> torch.Tensor:
    """The second pass: the embeddings of the ``selected`` candidates (in selection order), recomputed by
    streaming again only the images that hold one."""
    image_of = selected // plan.per_image
    patch_of = selected % plan.per_image
    if chosen_patches is not None:
        patch_of = chosen_patches[image_of, patch_of]
    images = torch.unique(image_of)  # sorted
    bank = torch.empty((len(selected), plan.dim), dtype=torch.float32)
    order = torch.argsort(image_of, stable=True)
    position = 0
    done = 0
    for batch in stream(images.tolist()):
        batch = batch.float().cpu()
        for image_features in batch:
            image = int(images[done])
            start = position
            while position < len(order) and int(image_of[order[position]]) == image:
                position += 1
            rows = order[start:position]
            bank[rows] = image_features[patch_of[rows]]
            done += 1
    if done != len(images):
        raise ValueError(f"the second pass yielded {done} of the {len(images)} images asked for")
    return bank


def greedy_coreset(
    points: torch.Tensor,
    count: int,
    num_starting_points: int = 10,
    seed: int = 0,
    chunk_rows: int = 2**20,
    progress: bool | int = False,
) -> torch.Tensor:
    """Indices of ``count`` points chosen by approximate greedy k-center selection.

    Each step takes the point farthest from everything chosen so far; the distances start as the
    mean distance to ``num_starting_points`` random points, drawn as the released sampler draws them
    for ``seed``, so the first pick is already a far-out point. The distance update runs over ``chunk_rows`` rows at a
    time into preallocated buffers, so the memory beside ``points`` is two vectors of length N and
    one chunk, whatever N; the chosen index stays on the device, so an accelerator never waits for
    the host between steps. ``progress``: the steps done of ``count`` with an ETA (a bar, or a line every
    tenth), as the other long stages report.
    """
    n = points.shape[0]
    if count >= n:
        return torch.arange(n, device=points.device)
    squared_norms = torch.cat(  # in chunks: ``points * points`` at once is a temporary as large as ``points``
        [(chunk * chunk).sum(dim=1) for chunk in points.split(max(1, 2**22 // max(points.shape[1], 1)))]
    )
    buffer = torch.empty(min(chunk_rows, n), dtype=points.dtype, device=points.device)

    def update(nearest: torch.Tensor, index: torch.Tensor) -> None:
        """``nearest = min(nearest, |points - points[index]|)``, chunk by chunk, in place."""
        centre = points.index_select(0, index)[0]
        offset = squared_norms.index_select(0, index)
        for start in range(0, n, chunk_rows):
            rows = slice(start, min(start + chunk_rows, n))
            distance = buffer[: rows.stop - start]
            torch.mv(points[rows], centre, out=distance)
            torch.sub(squared_norms[rows], distance.mul_(2), out=distance)
            distance.add_(offset).clamp_min_(0).sqrt_()
            torch.minimum(nearest[rows], distance, out=nearest[rows])

    # sampler.py: np.random.choice(N, min(10, N), replace=False) after np.random.seed(seed) (fix_seeds),
    # from a private RandomState (the same draws; the caller's NumPy stream is untouched)
    starts = torch.from_numpy(
        np.random.RandomState(seed).choice(n, min(num_starting_points, n), replace=False).astype(np.int64)
    ).to(points.device)
    nearest = torch.zeros(n, dtype=points.dtype, device=points.device)
    for index in starts.split(1):
        distances = torch.full_like(nearest, math.inf)
        update(distances, index)
        nearest += distances
    nearest /= len(starts)
    chosen = torch.empty(count, dtype=torch.long, device=points.device)
    for step in tracked(range(count), count, f"coreset search over {n:,} patches (steps)", progress):
        index = nearest.argmax().view(1)
        chosen[step : step + 1] = index
        update(nearest, index)
    return chosen


# --- nearest neighbours ---------------------------------------------------------------------------


def nearest_rows(
    queries: torch.Tensor, bank: torch.Tensor, bank_norms: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared Euclidean distances ``(n, k)`` (clamped at 0) and indices of each query's ``k`` nearest ``bank`` rows,
    as ``|q|^2 - 2 q.b + |b|^2`` (``bank_norms`` = ``|b|^2``)."""
    squared = (queries * queries).sum(dim=1, keepdim=True) - 2 * queries @ bank.T + bank_norms
    values, index = squared.topk(k, dim=1, largest=False)
    return values.clamp_min(0), index


class NearestNeighbourIndex:
    """Exact k-nearest-neighbour search over a fixed memory bank, built once per bank, returning
    SQUARED Euclidean distances as faiss ``IndexFlatL2`` does: a faiss flat index on the CPU when
    faiss is installed, chunked torch matrix products otherwise (on any device, memory bounded by
    ``chunk_elements`` distances at a time)."""

    def __init__(self, bank: torch.Tensor, backend: str = "auto", chunk_elements: int | None = None):
        # distances held at a time: 64 MB on the host, 1 GB on an accelerator (fewer, larger products)
        self.chunk_elements = chunk_elements or (2**24 if bank.device.type == "cpu" else 2**28)
        self.bank, self.faiss_index = bank, None
        if backend in ("auto", "faiss") and bank.device.type == "cpu":
            try:
                import faiss
            except ImportError:
                if backend == "faiss":
                    raise UserInputError("knn='faiss' needs faiss: pip install 'medrecontrast[faiss]'") from None
            else:
                self.faiss_index = faiss.IndexFlatL2(bank.shape[1])
                self.faiss_index.add(bank.contiguous().numpy())
                return
        self.bank_norms = (bank * bank).sum(dim=1)

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances ``(n, k)`` and bank indices ``(n, k)`` of each query's ``k`` nearest bank rows."""
        if self.faiss_index is not None:
            squared, indices = self.faiss_index.search(queries.contiguous().numpy(), k)
            return torch.from_numpy(squared).clamp_min(0), torch.from_numpy(indices).long()
        step = max(1, self.chunk_elements // max(self.bank.shape[0], 1))
        distances, indices = [], []
        for start in range(0, queries.shape[0], step):
            values, index = nearest_rows(queries[start : start + step], self.bank, self.bank_norms, k)
            distances.append(values)
            indices.append(index)
        return torch.cat(distances), torch.cat(indices)
