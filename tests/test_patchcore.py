"""PatchCore: coreset, nearest neighbours, memory budget."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from medrecontrast import build_detector
from medrecontrast.errors import UserInputError
from medrecontrast.models.patchcore import (
    BUDGET_USABLE,
    NearestNeighbourIndex,
    adaptive_pool_matrix,
    build_memory_bank,
    candidates_per_image,
    greedy_coreset,
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
    first = int(torch.randperm(400, generator=torch.Generator().manual_seed(0))[0])
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
    assert stats["candidates_per_image"] == 10 and bank.shape == (20, 8)
    all_patches = torch.cat([b.reshape(-1, 8) for b in batches])
    assert all(any(torch.equal(row, p) for p in all_patches) for row in bank)  # bank rows are real patches


def test_memory_bank_subsamples_per_image_to_fit_the_budget():
    batches = [torch.randn(4, 100, 32) for _ in range(5)]
    budget = int((4 * (32 + 16 + 2) * 20 * 25 + 4 * 32 * 200) / BUDGET_USABLE) + 1  # 25 candidates per image + the bank
    bank, stats = build_memory_bank(iter(batches), 20, budget_bytes=budget, coreset_ratio=0.1, projection_dim=16)
    assert stats["candidates_per_image"] == 25 and stats["candidates"] == 500
    assert bank.shape == (200, 32)


def test_candidate_ratio_draws_that_fraction_of_each_image():
    batches = [torch.randn(4, 100, 8) for _ in range(5)]
    bank, stats = build_memory_bank(
        iter(batches), 20, budget_bytes=10**8, coreset_ratio=0.01, projection_dim=4, candidate_ratio=0.1
    )
    assert stats["candidates_per_image"] == 10 and stats["candidates"] == 200 and bank.shape == (20, 8)


def test_accelerator_budget_bounds_the_search_not_the_host_candidates():
    """With a device budget, host memory holds only the candidates; the device holds the search."""
    args = dict(num_images=100, patches=784, dim=1024, coreset_ratio=0.01, projection_dim=128)
    host_only = candidates_per_image(**args, host_budget=2**28)
    host_part = candidates_per_image(**args, host_budget=2**28, device_budget=2**40)
    assert host_part > host_only  # the search's vectors moved off the host
    tight = candidates_per_image(**args, host_budget=2**40, device_budget=2**24)
    assert 0 < tight < 784 and tight * 100 * 4 * 130 + 4 * 1024 * 784 <= 2**24 * BUDGET_USABLE
    with pytest.raises(UserInputError, match="raise gpu_memory_budget_gb"):
        candidates_per_image(**args, host_budget=2**40, device_budget=2**20)


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
    with pytest.raises(UserInputError, match="raise memory_budget_gb"):
        build_memory_bank(iter([torch.randn(2, 10, 8)]), 1000, budget_bytes=1000)


@pytest.mark.slow
def test_peak_memory_stays_under_budget_on_a_large_feature_stream():
    """~1.6 GB of patch features streamed through a 200 MB budget, measured as the process's peak RSS."""
    script = textwrap.dedent("""
        import resource, torch
        from medrecontrast.models.patchcore import build_memory_bank
        torch.set_num_threads(1)
        images, patches, dim, batch = 2000, 784, 256, 8
        def stream():
            g = torch.Generator().manual_seed(0)
            for _ in range(images // batch):
                yield torch.randn(batch, patches, dim, generator=g)
        warm = next(stream()); del warm
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        bank, stats = build_memory_bank(
            stream(), images, budget_bytes=200 * 2**20, coreset_ratio=0.001, projection_dim=64
        )
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before, stats["candidates_per_image"], bank.shape[0])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True)
    grown, per_image, bank_size = map(int, result.stdout.split())
    total_features = 2000 * 784 * 256 * 4
    assert per_image < 784 and bank_size == math.ceil(0.001 * 2000 * 784)
    assert grown < 200 * 2**20 + 8 * 784 * 256 * 4 * 2, (
        f"peak grew by {grown / 2**20:.0f} MB"
    )  # budget + two batches in flight
    assert grown < total_features / 5
