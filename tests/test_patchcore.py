"""PatchCore: coreset, nearest neighbours, memory budget."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from medrecontrast import build_detector
from medrecontrast.errors import UserInputError
from medrecontrast.models.patchcore import (
    BUDGET_USABLE,
    NearestNeighbourIndex,
    adaptive_pool_matrix,
    build_memory_bank,
    greedy_coreset,
    plan_memory_bank,
    released_projection,
)


@pytest.mark.parametrize("size", [(128, 1024), (256, 1024), (2048, 1024), (1536, 1024), (100, 7), (7, 100)])
def test_adaptive_pool_matrix_equals_torch_pooling(size):
    x = torch.randn(5, size[0])
    expected = torch.nn.functional.adaptive_avg_pool1d(x[:, None, :], size[1])[:, 0]
    torch.testing.assert_close(x @ adaptive_pool_matrix(*size), expected, atol=1e-5, rtol=1e-5)


def released_patch_features(f2: torch.Tensor, f3: torch.Tensor, dim: int, p: int = 3) -> torch.Tensor:
    """Our reading of patchcore-inspection's ``_embed``, step by step, as a reference: PatchMaker.patchify
    (Unfold, zero padding (p-1)/2, patches (B, L, C, p, p)), layer3's unfolded patches bilinearly resized
    element by element to layer2's grid, MeanMapper (each C*p*p vector adaptively pooled to ``dim``),
    stack, Aggregator (the 2*dim vector pooled to ``dim``)."""
    F = torch.nn.functional

    def patchify(f):
        unfolded = F.unfold(f, p, padding=(p - 1) // 2)  # (B, C*p*p, L)
        return unfolded.reshape(f.shape[0], f.shape[1], p, p, -1).permute(0, 4, 1, 2, 3)  # (B, L, C, p, p)

    b, (h2, w2), (h3, w3) = f2.shape[0], f2.shape[-2:], f3.shape[-2:]
    patches2, patches3 = patchify(f2), patchify(f3)
    x = patches3.reshape(b, h3, w3, *patches3.shape[2:]).permute(0, 3, 4, 5, 1, 2)  # (B, C, p, p, h3, w3)
    shape = x.shape
    x = F.interpolate(x.reshape(-1, 1, h3, w3), size=(h2, w2), mode="bilinear", align_corners=False)
    x = x.reshape(*shape[:-2], h2, w2).permute(0, 4, 5, 1, 2, 3).reshape(b, h2 * w2, *shape[1:4])
    layers = [patches2.reshape(-1, *patches2.shape[2:]), x.reshape(-1, *x.shape[2:])]
    mapped = [F.adaptive_avg_pool1d(f.reshape(len(f), 1, -1), dim).squeeze(1) for f in layers]  # MeanMapper
    stacked = torch.stack(mapped, dim=1)
    return F.adaptive_avg_pool1d(stacked.reshape(len(stacked), 1, -1), dim).reshape(b, h2 * w2, dim)  # Aggregator


@pytest.mark.parametrize("embed_dim", [96, 256])
def test_patch_features_equal_the_released_aggregation(embed_dim):
    """Unfold + MeanMapper + Aggregator, not a 3x3 mean: layer2's 128*9 = 1152 values pool into windows
    that straddle channels and neighbourhood offsets."""
    detector = build_detector("patchcore", backbone="resnet18", pretrained=False, embed_dim=embed_dim, device="cpu")
    images = torch.randn(2, 3, 64, 64)
    features, (h, w) = detector.patch_features(images)
    _, f2, f3 = detector.model(images)
    torch.testing.assert_close(features, released_patch_features(f2, f3, embed_dim), atol=1e-5, rtol=1e-4)
    # ... and that is not what a plain 3x3 mean per channel then a channel pooling gives
    mean2, mean3 = (torch.nn.functional.avg_pool2d(f, 3, stride=1, padding=1) for f in (f2, f3))
    mean3 = torch.nn.functional.interpolate(mean3, size=mean2.shape[-2:], mode="bilinear", align_corners=False)
    pooled = [
        torch.nn.functional.adaptive_avg_pool1d(f.permute(0, 2, 3, 1).reshape(-1, 1, f.shape[1]), embed_dim)
        for f in (mean2, mean3)
    ]
    plain = torch.nn.functional.adaptive_avg_pool1d(
        torch.cat(pooled, dim=1).reshape(-1, 1, 2 * embed_dim), embed_dim
    ).reshape(2, h * w, embed_dim)
    assert not torch.allclose(features, plain, atol=1e-3)


def test_mean_mapper_on_a_small_tensor_by_hand():
    """2 channels x 3x3 neighbourhood = 18 values pooled to 4: windows [0,5), [4,9), [9,14), [13,18)
    (torch's floor/ceil rule), i.e. output 1 mixes channel 0's last offsets with none of channel 1,
    output 2 takes channel 1's first five offsets."""
    x = torch.arange(18, dtype=torch.float32)[None]
    expected = torch.tensor(
        [[sum(range(0, 5)) / 5, sum(range(4, 9)) / 5, sum(range(9, 14)) / 5, sum(range(13, 18)) / 5]]
    )
    torch.testing.assert_close(x @ adaptive_pool_matrix(18, 4), expected)


@pytest.mark.parametrize("knn", ["torch", "faiss"])
def test_patch_score_is_the_squared_distance_and_image_score_the_max(knn):
    """Hand-computed: bank {(0,0), (3,4)}; the patch (6,8) is 5 from (3,4): squared distance 25, and with
    k = 2 the mean of 25 and 100."""
    if knn == "faiss":
        pytest.importorskip("faiss")
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    index = NearestNeighbourIndex(bank, knn)
    squared, nearest = index.search(torch.tensor([[6.0, 8.0], [0.0, 1.0]]), k=2)
    torch.testing.assert_close(squared, torch.tensor([[25.0, 100.0], [1.0, 18.0]]))
    assert nearest.tolist() == [[1, 0], [0, 1]]
    detector = build_detector("patchcore", backbone="resnet18", pretrained=False, embed_dim=2, device="cpu", knn=knn)
    assert detector.config.num_neighbors == 1 and detector.config.reweight is False  # the released defaults
    detector.memory_bank_ = bank
    detector._index = index
    features = torch.tensor([[[6.0, 8.0], [0.0, 1.0], [3.0, 4.0]]])
    patch_scores = torch.tensor([[25.0, 1.0, 0.0]])
    assert detector.image_scores(features, patch_scores, torch.tensor([[1, 0, 1]])).tolist() == [25.0]


def test_patchcore_paper_sizes_resize_256_crop_224():
    from medrecontrast.run import run_config
    from medrecontrast.tasks import get_task

    config = run_config(get_task("mvtec:bottle"), "patchcore", 0, "paper")
    assert (config["image_size"], config["crop_size"]) == (256, 224)
    assert run_config(get_task("mvtec:bottle"), "recontrast", 0, "paper")["crop_size"] is None


def test_coreset_takes_one_point_per_cluster_before_any_duplicate():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=generator) * 50
    labels = torch.randint(0, 6, (300,), generator=generator)
    labels[:6] = torch.arange(6)
    points = centres[labels] + torch.randn(300, 16, generator=generator)
    chosen = greedy_coreset(points, 6, num_starting_points=10, seed=3)
    assert sorted(labels[chosen].tolist()) == list(range(6))
    more = greedy_coreset(points, 9, num_starting_points=10, seed=3)
    assert torch.equal(more[:6], chosen)  # greedy: a longer coreset extends the shorter one


def test_coreset_of_everything_and_determinism():
    points = torch.randn(50, 4)
    assert torch.equal(greedy_coreset(points, 50), torch.arange(50))
    assert torch.equal(greedy_coreset(points, 10, seed=1), greedy_coreset(points, 10, seed=1))


@pytest.mark.parametrize("chunk_rows", [1000, 4096, 777])
def test_chunked_coreset_is_identical_to_one_shot(chunk_rows):
    """The chunked distance update (bounded memory on a GPU) selects exactly what one pass selects."""
    points = torch.randn(5000, 64, generator=torch.Generator().manual_seed(0))
    one_shot = greedy_coreset(points, 200, seed=1, chunk_rows=len(points))
    assert torch.equal(greedy_coreset(points, 200, seed=1, chunk_rows=chunk_rows), one_shot)


def test_coreset_equals_the_textbook_greedy_k_center():
    """Every pick is the point farthest from those picked before (after the averaged start)."""
    points = torch.randn(400, 8, generator=torch.Generator().manual_seed(2))
    chosen = greedy_coreset(points, 30, num_starting_points=1, seed=0).tolist()
    first = int(np.random.RandomState(0).choice(400, 1, replace=False)[0])  # the released sampler's start
    nearest = torch.cdist(points.double(), points[first : first + 1].double())[:, 0]
    for index in chosen:
        assert nearest[index] == pytest.approx(float(nearest.max()), rel=1e-5)
        nearest = torch.minimum(nearest, torch.cdist(points.double(), points[index : index + 1].double())[:, 0])


@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbours_equal_brute_force(backend, k):
    if backend == "faiss":
        pytest.importorskip("faiss")
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(37, 12, generator=generator), torch.randn(101, 12, generator=generator)
    distances, indices = NearestNeighbourIndex(bank, backend, chunk_elements=500).search(queries, k=k)
    brute = torch.cdist(queries.double(), bank.double()) ** 2  # squared, as faiss IndexFlatL2
    expected, expected_index = brute.topk(k, dim=1, largest=False)
    torch.testing.assert_close(distances.double(), expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(indices, expected_index)


def test_memory_bank_keeps_ratio_of_all_patches_when_it_fits():
    batches = [torch.randn(4, 10, 8) for _ in range(5)]
    bank, stats = build_memory_bank(iter(batches), 20, budget_bytes=10**8, coreset_ratio=0.1, projection_dim=4)
    assert stats["candidates_per_image"] == 10 and bank.shape == (20, 8) and stats["passes"] == 1
    all_patches = torch.cat([b.reshape(-1, 8) for b in batches])
    assert all(any(torch.equal(row, p) for p in all_patches) for row in bank)  # bank rows are real patches


# The released sampler's picks (patchcore-inspection fcaa92f, src/patchcore/sampler.py
# ApproximateGreedyCoresetSampler(percentage, cpu)._compute_greedy_coreset_indices(_reduce_features(x))
# run right after fix_seeds(seed), on x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))).
RELEASED_PICKS = {
    (300, 64, 0.05, 3): [81, 243, 281, 187, 299, 212, 6, 232, 14, 7, 192, 23, 214, 132, 240],
    (500, 128, 0.02, 0): [484, 40, 3, 120, 228, 247, 407, 253, 255, 190],  # D == 128: no projection
    (257, 200, 0.1, 7): [
        25,
        61,
        188,
        26,
        184,
        33,
        136,
        30,
        99,
        199,
        76,
        52,
        174,
        80,
        192,
        209,
        4,
        130,
        115,
        204,
        158,
        185,
        202,
        103,
        37,
    ],  # int(25.7) = 25 entries: the size is floored
}


@pytest.mark.parametrize("case", list(RELEASED_PICKS))
def test_memory_bank_is_the_released_samplers_for_the_same_seed(case):
    """Same features and seed, same bank as patchcore-inspection: its torch.nn.Linear projection (default
    initialisation from the torch stream), its NumPy start points, its floored size. Failed before: the
    projection was a Gaussian matrix, the start points a torch permutation, the size a ceiling."""
    n, d, ratio, seed = case
    features = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    bank, stats = build_memory_bank(
        iter([features[None]]), 1, budget_bytes=10**8, coreset_ratio=ratio, projection_dim=128, seed=seed
    )
    assert stats["memory_bank"] == len(RELEASED_PICKS[case])
    assert torch.equal(bank, features[RELEASED_PICKS[case]])


def test_released_projection_is_linears_default_initialisation():
    torch.manual_seed(5)
    expected = torch.nn.Linear(40, 16, bias=False).weight.detach()
    state = torch.get_rng_state()
    assert torch.equal(released_projection(40, 16, 5), expected)
    assert torch.equal(torch.get_rng_state(), state)  # a private generator: the caller's stream is untouched
    assert released_projection(16, 16, 5) is None


def _stream(images: int, patches: int, dim: int, batch: int = 3):
    """Deterministic per-image features, as an encoder gives them: the same image, the same features."""

    def features(indices=None):
        chosen = list(range(images)) if indices is None else list(indices)
        for start in range(0, len(chosen), batch):
            yield torch.stack(
                [
                    torch.randn(patches, dim, generator=torch.Generator().manual_seed(1000 + i))
                    for i in chosen[start : start + batch]
                ]
            )

    return features


@pytest.mark.parametrize("candidate_ratio", [1.0, 0.3])
def test_two_pass_bank_equals_the_one_pass_greedy_over_every_patch(candidate_ratio):
    """Projections only, then the selected patches recomputed: exactly the bank of one pass."""
    images, patches, dim = 20, 50, 64
    args = dict(coreset_ratio=0.05, projection_dim=16, seed=2, candidate_ratio=candidate_ratio)
    one, stats_one = build_memory_bank(_stream(images, patches, dim), images, budget_bytes=10**9, **args)
    per_image = patches if candidate_ratio == 1 else math.ceil(candidate_ratio * patches)
    # room for the projections and the bank, not for every embedding
    budget = int(4 * ((16 + 2) * images * per_image + dim * 50) / BUDGET_USABLE) + 64
    two, stats_two = build_memory_bank(_stream(images, patches, dim), images, budget_bytes=budget, **args)
    assert (stats_one["passes"], stats_two["passes"]) == (1, 2)
    assert stats_two["candidates"] == images * per_image and stats_two["memory_bank"] == 50
    assert torch.equal(one, two)
    if candidate_ratio == 1:  # the one-pass bank is the greedy coreset over all 1,000 patches
        everything = torch.cat(list(_stream(images, patches, dim)(None))).reshape(-1, dim)
        picks = greedy_coreset(everything @ released_projection(dim, 16, 2).T, 50, 10, 2)
        assert torch.equal(one, everything[picks])


def test_oct2017_sized_bank_comes_from_every_patch_within_the_default_budget():
    """Regression: with the paper profile and the 16 GB budget, OCT2017 (26,315 images x 784 patches) kept 43
    random patches per image, fewer candidates than a 1 % coreset's 206,309 entries: no greedy selection
    ran at all. Now the greedy runs over all 20.6 M patches in two passes."""
    plan = plan_memory_bank(26315, 784, 1024, 0.01, 128, 16 * 2**30)
    assert plan.per_image == 784 and plan.candidates == 26315 * 784 and plan.passes == 2
    assert plan.target == int(0.01 * 26315 * 784) < plan.candidates
    assert plan.host_bytes == 4 * (130 * 26315 * 784 + 1024 * plan.target)  # ~10.5 GB: projections + the bank


def test_small_oct_shaped_fit_never_selects_from_fewer_candidates_than_the_coreset():
    """A budget that once subsampled every image to a few patches now runs the second pass instead."""
    images, patches, dim = 30, 196, 96
    budget = int(4 * (dim * 5 * images + 34 * images * patches + dim * 60) / BUDGET_USABLE)  # once: 5 per image
    bank, stats = build_memory_bank(
        _stream(images, patches, dim), images, budget_bytes=budget, coreset_ratio=0.01, projection_dim=32
    )
    assert stats["candidates"] == images * patches and stats["passes"] == 2
    assert bank.shape == (int(0.01 * images * patches), dim)


def test_a_bank_whose_projections_cannot_fit_is_refused_with_the_numbers():
    with pytest.raises(
        UserInputError, match=r"needs .* GiB.*Raise memory_budget_gb to at least 14 or set candidate_ratio"
    ):
        plan_memory_bank(26315, 784, 1024, 0.01, 128, 4 * 2**30)
    # the paper's 10 % bank at OCT2017 scale is itself 7.9 GiB: 16 GiB of host memory is not enough on a CPU
    with pytest.raises(UserInputError, match="at least 23"):
        plan_memory_bank(26315, 784, 1024, 0.1, 128, 16 * 2**30)
    assert plan_memory_bank(26315, 784, 1024, 0.1, 128, 16 * 2**30, device_budget=2**62).host_bytes < 8.5 * 2**30
    assert plan_memory_bank(26315, 784, 1024, 0.01, 128, 4 * 2**30, candidate_ratio=0.1).per_image == 79


def test_accelerator_budget_bounds_the_search_not_the_host():
    """With a device budget, the host holds only the bank; the device holds the projections and the search."""
    args = dict(num_images=100, patches=784, dim=1024, coreset_ratio=0.01, projection_dim=128)
    host_only = plan_memory_bank(**args, host_budget=2**28)
    on_device = plan_memory_bank(**args, host_budget=2**28, device_budget=2**40)
    assert on_device.host_bytes < host_only.host_bytes
    with pytest.raises(UserInputError, match="raise gpu_memory_budget_gb"):
        plan_memory_bank(**args, host_budget=2**40, device_budget=2**20)


def test_a_sweep_whose_patchcore_bank_cannot_fit_is_refused_at_planning(tmp_path):
    from medrecontrast.bench import SweepConfig, plan_sweep

    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["patchcore"],
        seeds=[0],
        profile="tiny",
        out=str(tmp_path / "runs"),
        report=str(tmp_path / "report"),
        options={"image_size": 64, "holdout": 0.25},
        method={"patchcore": {"memory_budget_gb": 1e-5}},
        task={"synth-oct": {"data": {"size": 64, "n_train": 8, "n_test_normal": 4, "n_test_abnormal": 4}}},
    )
    with pytest.raises(UserInputError, match=r"coreset over all 384 patches of 6 images.*\[task synth-oct"):
        plan_sweep(config)
    assert not (tmp_path / "runs" / "synth-oct").exists()


def test_a_subsampled_bank_is_named_in_the_report_notes():
    from medrecontrast.models.patchcore import PatchCore

    assert PatchCore.notes({"candidate_ratio": 1.0}) == []
    assert "random 10% of each training image's patches" in PatchCore.notes({"candidate_ratio": 0.1})[0]


def test_candidates_are_never_pinned_on_an_accelerator(monkeypatch):
    """Regression (H100 run, 2026-11-27): the candidates were allocated with pin_memory=True, and torch's
    pinned allocator rounds a request up to the next power of two, so 5,000 OCT-sized images planned at
    13.6 GB of a 16 GB budget took 16 GB pinned (host peak 24.4 GB). Reproduced without a GPU by
    recording the allocation a CUDA fit asks for."""
    import medrecontrast.models.patchcore as patchcore

    asked = []

    class Stop(Exception):
        pass

    def empty(*args, **kwargs):
        asked.append(kwargs)
        raise Stop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(patchcore.torch, "empty", empty)
    with pytest.raises(Stop):
        build_memory_bank(iter([torch.randn(2, 10, 8)]), 4, budget_bytes=10**8, device="cuda")
    assert asked and not asked[0].get("pin_memory", False)


def test_memory_budget_too_small_is_a_clear_error():
    with pytest.raises(UserInputError, match="Raise memory_budget_gb"):
        build_memory_bank(iter([torch.randn(2, 10, 8)]), 1000, budget_bytes=1000)


@pytest.mark.slow
def test_peak_memory_stays_under_budget_on_a_large_feature_stream():
    """~0.96 GB of patch features streamed twice through a 350 MB budget (the projections fit, the
    embeddings do not: two passes), measured as the process's peak RSS."""
    script = textwrap.dedent("""
        import resource, torch
        from medrecontrast.models.patchcore import build_memory_bank
        torch.set_num_threads(1)
        images, patches, dim, batch = 1200, 784, 256, 8
        def stream(indices=None):
            chosen = list(range(images)) if indices is None else list(indices)
            for start in range(0, len(chosen), batch):
                g = torch.Generator().manual_seed(start)
                yield torch.randn(len(chosen[start : start + batch]), patches, dim, generator=g)
        warm = next(stream()); del warm
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        bank, stats = build_memory_bank(
            stream, images, budget_bytes=350 * 2**20, coreset_ratio=0.001, projection_dim=64
        )
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before, stats["candidates"], stats["passes"], bank.shape[0])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True)
    grown, candidates, passes, bank_size = map(int, result.stdout.split())
    total_features = 1200 * 784 * 256 * 4
    print(f"peak grew by {grown / 2**20:.0f} MB")
    assert candidates == 1200 * 784 and passes == 2 and bank_size == int(0.001 * 1200 * 784)
    assert grown < 350 * 2**20 + 8 * 784 * 256 * 4 * 2, f"peak grew by {grown / 2**20:.0f} MB"  # + two batches
    assert grown < total_features / 3


def test_the_coreset_search_reports_its_steps_with_an_eta(capsys):
    """Issue 37 item 13, failed before: the greedy search (on a CPU the longest stage of a fit: 10 minutes on 1,274
    real chest X-rays) printed nothing until the bank was built, so the run looked hung. Now its steps of the
    total, with an ETA, as the other stages report them; the selection is unchanged."""
    points = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    quiet = greedy_coreset(points, 40, seed=3)
    reported = greedy_coreset(points, 40, seed=3, progress=1)
    assert torch.equal(quiet, reported)
    lines = [line for line in capsys.readouterr().err.splitlines() if "coreset search" in line]
    assert lines[0].strip().startswith("coreset search over 400 patches (steps): 0/40")
    assert lines[-1].rstrip().endswith("s") and "40/40" in lines[-1] and any("ETA" in line for line in lines)
