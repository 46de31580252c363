"""Dinomaly against the released code (guojiajeremy/Dinomaly c5c76d0).

``golden/dinomaly_released.json`` holds numbers recorded by running the released ``ViTill`` (with their
DINOv2 ``DinoVisionTransformer``, ``bMlp``, ``Block`` + ``LinearAttention2``), ``global_cosine_hm_percent``,
``cal_anomaly_maps``, ``get_gaussian_kernel``, ``StableAdamW`` and ``WarmCosineScheduler`` outside this
repository, on a tiny DINOv2-with-registers ViT (dim 24, 2 heads, 10 blocks, 518 px position grid) whose
every tensor is :func:`golden_value` of its released name, and on one seeded batch of two 56 px images.
Here the suite's network is built with the same architecture, the encoder loaded from a file in Meta's
layout (so the key conversion is tested too) and the decoder side copied by name.
"""

import json
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medrecontrast.errors import UserInputError
from medrecontrast.losses import dinomaly_hard_fraction, global_cosine_hm_percent
from medrecontrast.models import build_detector
from medrecontrast.models.anomaly_map import anomaly_map, gaussian_blur_kernel, image_scores
from medrecontrast.models.dinomaly import Dinomaly, DinoV2Encoder, ViTill
from medrecontrast.optim import StableAdamW, warm_cosine_lr

GOLDEN = json.loads((Path(__file__).parent / "golden" / "dinomaly_released.json").read_text())
RTOL = 1e-5


def golden_value(name: str, shape) -> torch.Tensor:
    """The value every tensor of the golden network has, by its released name."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float64)
    if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
        return (1 + 0.1 * x).float()
    if name.endswith("gamma"):
        return (0.1 + 0.05 * x).float()
    return (0.05 * x).float()


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The suite's ViTill with the golden weights: the encoder from a Meta-layout file, the rest by name."""
    meta = {k: golden_value(f"encoder.{k}", shape) for k, shape in GOLDEN["meta_keys"].items()}
    path = tmp_path_factory.mktemp("weights") / "tiny_dinov2_reg4.pth"
    torch.save(meta, path)
    encoder = DinoV2Encoder("dinov2_vits14_reg", weights=path, embed_dim=24, depth=10, num_heads=2)
    model = ViTill(encoder, target_layers=(2, 3, 4, 5, 6, 7, 8, 9))
    decoder_side = {k: golden_value(k, v.shape) for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(decoder_side, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing)  # every released name exists here
    return model


def pixels() -> torch.Tensor:
    return torch.rand(2, 3, GOLDEN["size"], GOLDEN["size"], generator=torch.Generator().manual_seed(0))


def close(tensor: torch.Tensor, recorded: dict, spread: float = RTOL) -> None:
    """Norm within ``RTOL``; sum and first elements within ``spread`` of the norm."""
    t = tensor.detach().double()
    assert t.norm().item() == pytest.approx(recorded["norm"], rel=RTOL)
    assert t.sum().item() == pytest.approx(recorded["sum"], rel=RTOL, abs=spread * recorded["norm"])
    torch.testing.assert_close(
        t.flatten()[:4], torch.tensor(recorded["first"], dtype=torch.float64), rtol=RTOL, atol=spread * recorded["norm"]
    )


def test_features_loss_gradients_step_map_and_score_equal_the_released_code(network):
    model = network
    model.train()
    torch.manual_seed(123)  # the bottleneck's dropout masks, drawn in the released order
    targets, outputs = model(pixels())
    for mine, recorded in zip(targets + outputs, GOLDEN["train_en"] + GOLDEN["train_de"]):
        close(mine, recorded)
    loss = global_cosine_hm_percent(targets, outputs, p=GOLDEN["p"], factor=0.1)
    assert loss.item() == pytest.approx(GOLDEN["loss"], rel=RTOL)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(GOLDEN["grads"])  # the same parameters learn: the encoder gets no gradient
    for name, grad in grads.items():
        close(grad, GOLDEN["grads"][name])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    total = nn.utils.clip_grad_norm_(model.trainable().parameters(), max_norm=0.1)
    assert total.item() == pytest.approx(GOLDEN["clip_total_norm"], rel=RTOL)
    optimizer = StableAdamW(model.trainable().parameters(), lr=2e-3, weight_decay=1e-4, amsgrad=True, eps=1e-8)
    optimizer.step()
    # An element whose gradient is ~1e-9 (about eps) moves by lr * g / (|g| + eps), which float32 summation
    # order decides in its first digits; measured: every update's norm within 5e-7, sums within 6e-5 of the norm.
    # The optimiser alone is checked to RTOL on identical gradients (the next test).
    for name in grads:
        close(dict(model.named_parameters())[name].detach() - before[name], GOLDEN["step_delta"][name], spread=2e-4)

    model.eval()
    with torch.no_grad():
        targets, outputs = model(pixels())
    for mine, recorded in zip(targets + outputs, GOLDEN["eval_en"] + GOLDEN["eval_de"]):
        close(mine, recorded)
    maps = anomaly_map(targets, outputs, (GOLDEN["size"],) * 2, reduction="mean")
    close(maps, GOLDEN["map_input"])
    maps = gaussian_blur_kernel(F.interpolate(maps, size=(256, 256), mode="bilinear", align_corners=False), 4.0, 5)
    close(maps, GOLDEN["map_256"])
    torch.testing.assert_close(
        image_scores(maps, "top1").double(), torch.tensor(GOLDEN["scores"], dtype=torch.float64), rtol=RTOL, atol=0
    )


def test_the_detector_scores_as_the_released_evaluation(network):
    """score_batch: cal_anomaly_maps -> resize 256 -> 5x5 Gaussian -> top 1 %; the map back at the input size."""
    detector = build_detector("dinomaly", encoder="dinov2_vits14_reg", pretrained=False, device="cpu", amp=False)
    detector.model, detector.fitted_ = network, True  # the released network's weights, as if loaded
    scores, maps = detector.score_batch(pixels())
    with torch.no_grad():
        targets, outputs = network.eval()(pixels())
    reference = gaussian_blur_kernel(
        F.interpolate(
            anomaly_map(targets, outputs, (56, 56), reduction="mean"),
            size=(256, 256),
            mode="bilinear",
            align_corners=False,
        ),
        4.0,
        5,
    )
    torch.testing.assert_close(scores, image_scores(reference, "top1"))
    assert maps.shape == (2, 56, 56)


def test_one_stable_adamw_step_sequence_equals_the_released_optimizer():
    g = torch.Generator().manual_seed(5)
    w = nn.Parameter(torch.randn(7, 5, generator=g))
    optimizer = StableAdamW(
        [w], lr=2e-3, betas=(0.9, 0.999), weight_decay=1e-4, amsgrad=True, eps=1e-10, clip_threshold=0.5
    )
    for step in range(3):
        w.grad = torch.randn(7, 5, generator=g) * (10.0**-step)
        optimizer.step()
    torch.testing.assert_close(w.detach().flatten(), torch.tensor(GOLDEN["stable_adamw"]), rtol=RTOL, atol=1e-7)


def test_the_learning_rate_of_every_iteration_is_the_released_warm_cosine_schedule():
    mine = [warm_cosine_lr(i, 300, 2e-3, 2e-4, 100) for i in range(305)]
    torch.testing.assert_close(
        torch.tensor(mine, dtype=torch.float64),
        torch.tensor(GOLDEN["lrs_300_100"], dtype=torch.float64),
        rtol=1e-9,
        atol=1e-15,
    )
    assert mine[0] == 0.0 and dinomaly_hard_fraction(0) == 0 and dinomaly_hard_fraction(500) == pytest.approx(0.45)
    assert dinomaly_hard_fraction(5000) == 0.9


def test_meta_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    meta = {k: golden_value(f"encoder.{k}", shape) for k, shape in GOLDEN["meta_keys"].items()}
    meta["pos_embed"] = meta["pos_embed"][:, :100]
    path = tmp_path / "wrong.pth"
    torch.save(meta, path)
    with pytest.raises(UserInputError, match="wrong.pth does not fit"):
        DinoV2Encoder("dinov2_vits14_reg", weights=path, embed_dim=24, depth=10, num_heads=2)
    with pytest.raises(UserInputError, match="does not exist"):
        DinoV2Encoder("dinov2_vits14_reg", weights=tmp_path / "absent.pth")


def test_settings_are_the_released_scripts_and_sizes_are_checked_at_planning():
    c = Dinomaly.Config()
    assert (c.encoder, c.iters, c.batch_size, c.drop_last, c.grad_clip_norm) == (
        "dinov2_vitb14_reg",
        5000,
        16,
        True,
        0.1,
    )
    assert (c.lr, c.lr_final, c.warmup_iters, c.weight_decay, c.amsgrad, c.adam_eps) == (
        2e-3,
        2e-4,
        100,
        1e-4,
        True,
        1e-8,
    )
    assert (c.hard_fraction, c.hard_fraction_ramp, c.hard_mining_factor, c.bottleneck_dropout) == (0.9, 1000, 0.1, 0.2)
    assert (c.eval_size, c.sigma, c.blur_kernel) == (256, 4.0, 5)
    from medrecontrast.run import resolve_run_config

    paper = resolve_run_config("aptos", "dinomaly", 0, "paper")
    assert (paper.image_size, paper.crop_size, paper.detector["encoder"]) == (448, 392, "dinov2_vitb14_reg")
    unified = resolve_run_config("mvtec-unified", "dinomaly", 0, "paper")
    assert (unified.detector["iters"], unified.detector["adam_eps"]) == (10000, 1e-10)
    with pytest.raises(UserInputError, match="multiple of 14"):
        Dinomaly.check_plan(paper.method_config(), train_images=10, input_size=400)
    Dinomaly.check_plan(paper.method_config(), train_images=10, input_size=392)
    with pytest.raises(UserInputError, match="encoder"):
        build_detector("dinomaly", encoder="resnet18", pretrained=False)


CONFIG = Path(__file__).parent.parent / "configs" / "recontrast-vs-dinomaly.toml"


def test_the_head_to_head_config_plans_both_paper_recipes():
    from medrecontrast.bench import load_sweep_config
    from medrecontrast.run import resolve_run_config

    config = load_sweep_config(CONFIG).resolved()
    assert config.tasks == ["aptos", "oct", "isic", "chest-xray", "brain-mri"] and config.seeds == [0, 1, 2]
    assert config.methods == ["recontrast", "dinomaly"] and config.profile == "paper"
    for task in config.tasks:
        dinomaly = resolve_run_config(task, "dinomaly", 0, "paper")
        assert (dinomaly.image_size, dinomaly.crop_size, dinomaly.detector["iters"]) == (448, 392, 5000)
        assert dinomaly.detector["pretrained"] and dinomaly.holdout == 0
        recontrast = resolve_run_config(task, "recontrast", 0, "paper")
        assert recontrast.detector["backbone"] == "wide_resnet50_2" and recontrast.detector["pretrained"]


@pytest.mark.slow
def test_a_tiny_head_to_head_runs_end_to_end_through_tables_figures_and_predict(tmp_path):
    """The config above at demo size (one built-in task, one seed, 12 iterations): sweep, every table and figure,
    save/load and predict; Dinomaly's maps (112 px) are drawn over its own inputs beside ReContrast's (64 px)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.image import AxesImage

    from medrecontrast.bench import build_report, collect_results, load_sweep_config, run_sweep
    from medrecontrast.bench.figures import examples_figure
    from medrecontrast.bench.results import finished
    from medrecontrast.models import Detector
    from medrecontrast.run.prediction import predict_images

    runs = tmp_path / "runs"
    config = load_sweep_config(
        CONFIG, tasks=["synth-oct"], seeds=[0], profile="tiny", out=str(runs), options={"iters": 12}
    )
    run_sweep(config, progress=False)
    results = collect_results(runs)
    assert sorted(results["method"]) == ["dinomaly", "recontrast"] and (results["status"] == "finished").all()
    assert set(results["backbone"]) == {"resnet18", "dinov2_vits14_reg"}
    readme = build_report(runs, tmp_path / "report")
    text = readme.read_text()
    assert "Dinomaly from random weights says nothing about the method" in text and "| dinomaly" in text
    for name in (
        "table.md",
        "table.tex",
        "roc.png",
        "auroc.png",
        "scores_synth-oct.png",
        "loss.png",
        "examples_synth-oct.png",
    ):
        assert (readme.parent / name).stat().st_size > 0, name
    figure = examples_figure(finished(results), "synth-oct")
    for ax in figure.axes:
        shown = [child for child in ax.get_children() if isinstance(child, AxesImage)]
        if len(shown) == 2:  # a map over its image: the same pixels under both
            assert shown[0].get_array().shape[:2] == shown[1].get_array().shape[:2]
    run = Path(results.loc[results["method"] == "dinomaly", "folder"].iloc[0])
    loaded = Detector.load(run / "model.pt", encoder="dinov2_vits14_reg")
    assert type(loaded) is Dinomaly and loaded.config.eval_size == 256
    from medrecontrast.tasks import get_task

    paths = [item["image"] for item in get_task("synth-oct").load().test[:3]]
    predicted = predict_images(run, paths, tmp_path / "predicted")
    scores = pd.read_csv(predicted / "scores.csv")
    assert len(scores) == 3 and scores["score"].notna().all() and len(list((predicted / "overlays").iterdir())) == 3


@pytest.mark.slow
def test_a_single_run_at_a_size_that_is_not_a_multiple_of_the_patch_is_refused_before_training(tmp_path):
    """`train` (run_training) makes the sweep's planning checks too: 64 px would drop 8 px of every image."""
    from medrecontrast.run import resolve_run_config, run_training

    config = resolve_run_config("synth-oct", "dinomaly", 0, "tiny", layers=[("test", {"image_size": 64})])
    with pytest.raises(UserInputError, match="multiple of 14"):
        run_training(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "model.pt").exists()
