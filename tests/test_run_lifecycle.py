"""`medrecontrast train` / `evaluate`: the run folder, refusal to overwrite, resume, re-scoring."""

import json

import layouts
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medrecontrast.cli import app
from medrecontrast.errors import UserInputError
from medrecontrast.run import (
    PROFILES,
    evaluate_run,
    example_indices,
    run_config,
    split_holdout,
    train_run,
)
from medrecontrast.tasks import get_task

runner = CliRunner()
TINY = dict(size=32, n_train=6, n_test_normal=3, n_test_abnormal=3)


def tiny_task():
    return get_task("synth-fundus", **TINY)


@pytest.mark.slow
def test_run_folder_holds_everything(tmp_path):
    metrics = train_run(
        tiny_task(), "rd4ad", tmp_path / "run", seed=1, overrides={"iters": 2}, progress=False, profile="tiny"
    )
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.json",
        "environment.json",
        "model.pt",
        "loss.csv",
        "scores.csv",
        "metrics.json",
        "status.json",
    } <= files
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["method"] == "rd4ad" and config["seed"] == 1 and config["detector"]["iters"] == 2
    assert "checkpoint.pt" not in files  # deleted when the run finished (issue 23 item 6; keep_checkpoints keeps it)
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["packages"]["torch"] and env["device"]
    assert len(pd.read_csv(tmp_path / "run" / "loss.csv")) == 2
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert len(scores) == 6 and set(scores["label"]) == {0, 1}
    assert 0 <= metrics["image_auroc"] <= 1 and "pixel_auroc" in metrics and metrics["timings"]["train_s"] > 0
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_finished_run_is_not_overwritten_without_force(tmp_path):
    train_run(tiny_task(), "patchcore", tmp_path / "pc", progress=False, profile="tiny")
    stamp = (tmp_path / "pc" / "model.pt").stat().st_mtime_ns
    with pytest.raises(UserInputError, match="already holds a finished run; pass force=True"):
        train_run(tiny_task(), "patchcore", tmp_path / "pc", progress=False, profile="tiny")
    assert (tmp_path / "pc" / "model.pt").stat().st_mtime_ns == stamp
    train_run(tiny_task(), "patchcore", tmp_path / "pc", force=True, progress=False, profile="tiny")
    assert (tmp_path / "pc" / "model.pt").stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_unfinished_run_needs_resume_with_the_same_configuration(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "status.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "r" / "config.json").write_text(json.dumps(run_config(tiny_task(), "rd4ad", 0, "tiny", {"iters": 3})))
    with pytest.raises(UserInputError, match="unfinished run; pass resume=True"):
        train_run(tiny_task(), "rd4ad", tmp_path / "r", overrides={"iters": 3}, progress=False, profile="tiny")
    with pytest.raises(UserInputError, match="recorded options differ"):
        train_run(
            tiny_task(), "rd4ad", tmp_path / "r", overrides={"iters": 4}, resume=True, progress=False, profile="tiny"
        )
    train_run(tiny_task(), "rd4ad", tmp_path / "r", overrides={"iters": 3}, resume=True, progress=False, profile="tiny")


@pytest.mark.slow
def test_evaluate_rescores_without_retraining(tmp_path):
    first = train_run(tiny_task(), "patchcore", tmp_path / "pc", progress=False, profile="tiny")
    before = (tmp_path / "pc" / "scores.csv").read_text()
    # issue 11 item 2: a finished run's results are never replaced without --force
    with pytest.raises(UserInputError, match="already holds results.*force=True"):
        evaluate_run(tmp_path / "pc")
    again = evaluate_run(tmp_path / "pc", force=True)
    assert again["image_auroc"] == first["image_auroc"] and again["f1_holdout"] == first["f1_holdout"]
    assert again["timings"]["train_s"] == first["timings"]["train_s"]
    history = json.loads((tmp_path / "pc" / "evaluations.json").read_text())
    assert len(history) == 1 and history[0]["same_data_as_training"] and history[0]["forced"]
    kept = tmp_path / "pc" / history[0]["previous_results"]
    assert (kept / "scores.csv").read_text() == before and (kept / "metrics.json").is_file()
    assert json.loads((tmp_path / "pc" / "data.json").read_text())["files"] > 0
    config = json.loads((tmp_path / "pc" / "config.json").read_text())
    config["format"] = 99
    (tmp_path / "pc" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match="incompatible version"):
        evaluate_run(tmp_path / "pc", force=True)
    with pytest.raises(UserInputError, match="not a finished run folder"):
        evaluate_run(tmp_path / "nothing")


def test_profiles():
    task = get_task("isic")
    paper = run_config(task, "recontrast", 0, "paper")
    expected = {
        "backbone": "wide_resnet50_2",
        "pretrained": True,
        "weights": None,
        "seed": 0,
        "iters": 2000,
        "epochs": None,
        "batch_size": 32,
        "image_score": "mean",
        "encoder_bn_train": True,
        "grad_clip_norm": None,
        "drop_last": False,
    }
    assert {k: paper["detector"][k] for k in expected} == expected
    assert (paper["image_size"], paper["crop_size"]) == (256, 224)
    assert paper["holdout"] == 0  # the authors train on every training normal
    tiny = run_config(task, "patchcore", 3, "tiny")
    assert tiny["detector"]["backbone"] == "resnet18" and tiny["detector"]["pretrained"] is False
    assert tiny["image_size"] == PROFILES["tiny"]["image_size"]
    with pytest.raises(UserInputError, match="unknown profile"):
        run_config(task, "rd4ad", 0, "fast")


@pytest.mark.slow
def test_cli_train_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.setattr("medrecontrast.tasks.synthetic.SYNTHETIC_DEFAULTS", {**TINY, "seed": 0})
    result = runner.invoke(
        app,
        ["train", "--profile", "tiny", "--task", "synth-oct", "--method", "patchcore", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    assert "image_auroc" in result.output and "pixel_auroc" in result.output
    result = runner.invoke(
        app,
        ["train", "--profile", "tiny", "--task", "synth-oct", "--method", "patchcore", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 2 and "--force" in result.output
    result = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--force" in result.output  # a run with results is not re-scored silently
    result = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "run"), "--force"])
    assert result.exit_code == 0 and "image_auroc" in result.output
    result = runner.invoke(app, ["train", "--task", "synth-oct", "--method", "padim"])
    assert result.exit_code == 2 and "unknown method 'padim'" in result.output


def test_force_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("precious")
    with pytest.raises(UserInputError, match="not a run folder"):
        train_run(tiny_task(), "patchcore", tmp_path / "thesis", force=True, progress=False, profile="tiny")
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "precious"


def test_overrides_are_checked_and_applied():
    task = tiny_task()
    config = run_config(task, "rd4ad", 0, "tiny", {"iters": 5, "image_size": 96, "holdout": 0.3})
    assert config["detector"]["iters"] == 5 and config["image_size"] == 96 and config["holdout"] == 0.3
    with pytest.raises(UserInputError, match="unknown option.*iterations"):
        run_config(task, "rd4ad", 0, "tiny", {"iterations": 5})
    with pytest.raises(UserInputError, match="multiple of 32"):
        run_config(task, "recontrast", 0, "tiny", {"image_size": 48})
    with pytest.raises(UserInputError, match="holdout"):
        run_config(task, "patchcore", 0, "tiny", {"holdout": 1.0})
    assert run_config(task, "patchcore", 0, "tiny", {"image_size": 48})["image_size"] == 48  # PatchCore takes any size


def test_holdout_is_fixed_per_task_and_disjoint_from_training():
    items = [{"id": str(i)} for i in range(40)]
    train, held = split_holdout(items, 0.1)
    assert len(held) == 4 and len(train) == 36 and not {i["id"] for i in train} & {i["id"] for i in held}
    assert split_holdout(items, 0.1) == (train, held)
    assert split_holdout(items, 0) == (items, [])
    with pytest.raises(UserInputError, match="no training images"):
        split_holdout(items[:1], 0.5)


def test_holdout_draw_depends_on_ids_not_positions():
    """Failed before (a numpy permutation of positions): adding one training image, removing another or
    listing them in another order moved which images were held out."""
    items = [{"id": f"img{i:03d}"} for i in range(100)]
    held = {it["id"] for it in split_holdout(items, 0.1)[1]}
    assert {it["id"] for it in split_holdout(items[::-1], 0.1)[1]} == held
    grown = {it["id"] for it in split_holdout([{"id": "new"}, *items], 0.1)[1]}
    assert len(held - grown) <= 1 and len(grown - held) <= 1  # one more image: at most the edge of the draw moves
    dropped = next(i for i in items if i["id"] not in held)
    assert {it["id"] for it in split_holdout([i for i in items if i is not dropped], 0.1)[1]} == held


@pytest.mark.slow
def test_thresholded_metrics_and_examples_are_stored(tmp_path):
    metrics = train_run(
        tiny_task(), "patchcore", tmp_path / "pc", overrides={"holdout": 0.5}, progress=False, profile="tiny"
    )
    for key in ("f1_oracle", "acc_oracle", "f1_holdout", "acc_holdout", "pixel_auroc", "aupro", "aupro_per_image"):
        assert 0 <= metrics[key] <= 1, key
    examples = np.load(tmp_path / "pc" / "examples.npz")
    # 4 images every method shares, then the run's own best and worst scored abnormal and normal (issue 24)
    assert examples["images"].dtype == np.uint8 and examples["images"].shape == (8, 64, 64, 3)
    assert list(examples["labels"]) == [0, 1, 1, 1, 1, 1, 0, 0] and examples["maps"].shape == (8, 64, 64)
    assert list(examples["case"][:4]) == [""] * 4 and examples["case"][4] == "abnormal, highest score"
    scores = pd.read_csv(tmp_path / "pc" / "scores.csv")
    abnormal, normal = scores[scores["label"] == 1], scores[scores["label"] == 0]
    assert examples["ids"][4] == abnormal.loc[abnormal["score"].idxmax(), "id"]
    assert examples["ids"][5] == abnormal.loc[abnormal["score"].idxmin(), "id"]
    assert examples["ids"][6] == normal.loc[normal["score"].idxmax(), "id"]
    assert len(pd.read_csv(tmp_path / "pc" / "holdout_scores.csv")) == 3
    assert metrics["timings"]["train_peak_memory_mb"] > 0 and metrics["timings"]["inference_peak_memory_mb"] > 0


@pytest.mark.slow
def test_a_crash_inside_a_run_marks_it_failed_with_the_error(tmp_path, monkeypatch):
    from medrecontrast.models import patchcore

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(patchcore.PatchCore, "fit", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        train_run(tiny_task(), "patchcore", tmp_path / "pc", progress=False, profile="tiny")
    status = json.loads((tmp_path / "pc" / "status.json").read_text())
    assert status["status"] == "failed" and "disk full" in status["error"]


def test_examples_show_one_normal_then_each_abnormality_class_in_turn():
    labels = np.array([1, 1, 1, 0, 1, 0, 1])
    categories = ["CNV", "CNV", "CNV", "NORMAL", "DME", "NORMAL", "DRUSEN"]
    assert example_indices(labels, categories) == [3, 0, 4, 6]
    assert example_indices(labels, categories, count=3) == [3, 0, 4]
    assert example_indices(np.array([0, 0]), ["N", "N"]) == [0]


@pytest.mark.slow
def test_ctrl_c_says_what_happened_and_what_to_do(tmp_path, monkeypatch):
    """`train` interrupted by Ctrl-C once printed nothing; the run stays resumable and is recorded as interrupted
    (issue 23 item 7: it used to stay `running`, which a report could not tell from a live run)."""
    from medrecontrast.models import rd4ad

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rd4ad.RD4AD, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_task(), "rd4ad", tmp_path / "run", overrides={"iters": 2}, progress=False, profile="tiny")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGINT"
    result = runner.invoke(
        app,
        [
            "train",
            "--profile",
            "tiny",
            "--task",
            "synth-oct",
            "--method",
            "rd4ad",
            "--iters",
            "2",
            "--out",
            str(tmp_path / "cli"),
        ],
    )
    assert result.exit_code == 130 and "--resume" in result.output


@pytest.mark.slow
def test_environment_records_the_cpu_its_instruction_set_and_threads():
    """CPU results depend on the instruction set and thread count: both are recorded with the CPU model."""
    from medrecontrast.run import environment

    recorded = environment()
    assert recorded["cpu"] and recorded["cpu_capability"] in (
        "DEFAULT",
        "AVX2",
        "AVX512",
        "ZVECTOR",
        "SVE256",
        "NO AVX",
        "VSX",
    )
    assert isinstance(recorded["torch_threads"], int) and recorded["cpu_cores"] >= 1


@pytest.mark.slow
def test_one_missing_mask_keeps_the_pixel_metrics_of_the_others_with_a_warning(tmp_path):
    """One missing mask once silently dropped pixel AUROC and AUPRO for the whole task while `data
    check` said OK: now the check counts it, and the pixel metrics use the images that have masks."""
    import layouts

    layouts.mvtec(tmp_path, size=(32, 32))
    (tmp_path / "mvtec" / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    result = runner.invoke(app, ["data", "check", "mvtec:bottle", "--data-root", str(tmp_path)])
    assert result.exit_code == 0 and "1 abnormal test image(s) have no mask" in result.output
    with pytest.warns(UserWarning, match="1 abnormal test image"):
        metrics = train_run(
            "mvtec:bottle",
            "patchcore",
            tmp_path / "run",
            overrides={"embed_dim": 16},
            data_root=tmp_path,
            progress=False,
            profile="tiny",
        )
    assert metrics["masks_missing"] == 1 and 0 <= metrics["pixel_auroc"] <= 1 and "aupro" in metrics


@pytest.mark.slow
def test_environment_names_the_suite_version_when_it_is_not_installed(monkeypatch):
    """Regression (H100 run, 2026-11-27): run from a checkout on PYTHONPATH, environment.json said
    ``"medrecontrast": null``."""
    from importlib import metadata

    from medrecontrast import __version__
    from medrecontrast.run import environment

    real = metadata.version

    def version(name):
        if name == "medrecontrast":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    assert environment()["packages"]["medrecontrast"] == __version__


@pytest.mark.slow
def test_predict_scores_new_images_without_retraining(tmp_path):
    """Issue 11 item 20: `predict --run DIR IMAGES...` writes per-image scores, the label at the run's
    label-free threshold, and one overlay PNG per image; it never writes into a non-empty folder."""
    from PIL import Image

    train_run(tiny_task(), "patchcore", tmp_path / "pc", overrides={"holdout": 0.25}, progress=False, profile="tiny")
    rng = np.random.default_rng(0)
    (tmp_path / "new" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "new" / name)
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(tmp_path / "c.jpg")
    result = runner.invoke(
        app,
        [
            "predict",
            "--run",
            str(tmp_path / "pc"),
            str(tmp_path / "new"),
            str(tmp_path / "c.jpg"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    threshold = json.loads((tmp_path / "pc" / "metrics.json").read_text())["threshold_holdout"]
    assert sorted(scores["id"]) == ["a", "b", "c"] and np.isfinite(scores["score"]).all()
    assert (scores["label"] == np.where(scores["score"] >= threshold, "abnormal", "normal")).all()
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["a.png", "b.png", "c.png"]
    again = runner.invoke(
        app, ["predict", "--run", str(tmp_path / "pc"), str(tmp_path / "c.jpg"), "--out", str(tmp_path / "out")]
    )
    assert again.exit_code == 2 and "not empty" in again.output
    (tmp_path / "notes.txt").write_text("x")
    bad = runner.invoke(app, ["predict", "--run", str(tmp_path / "pc"), str(tmp_path / "notes.txt")])
    assert bad.exit_code == 2 and "not an image" in bad.output


def test_a_crop_larger_than_the_image_says_where_the_crop_came_from():
    """Seen preparing the GPU run: `image_size = 64` under the paper profile was refused with
    "224 > 64" and no word that 224 is PatchCore's paper crop."""
    with pytest.raises(
        UserInputError, match="224 \\(from patchcore's paper profile\\) > 64 \\(set in overrides\\); set crop_size too"
    ):
        run_config(get_task("synth-oct"), "patchcore", 0, "paper", {"image_size": 64})
    assert (
        run_config(get_task("synth-oct"), "patchcore", 0, "paper", {"image_size": 64, "crop_size": 64})["crop_size"]
        == 64
    )


@pytest.mark.slow
def test_a_re_evaluation_killed_half_way_is_never_reported_as_finished(tmp_path, monkeypatch):
    """Failed before: kill -9 during `evaluate --force` left `status: finished` with the old metrics.json and
    the new scores.csv, and `report` exited 0 with numbers the scores do not give."""
    import medrecontrast.run.folder as lifecycle  # every run-folder file is written by RunFolder
    from medrecontrast.bench import collect_results

    train_run(
        tiny_task(),
        "patchcore",
        tmp_path / "runs" / "synth-fundus" / "patchcore" / "seed-0",
        progress=False,
        profile="tiny",
    )
    run = tmp_path / "runs" / "synth-fundus" / "patchcore" / "seed-0"
    (tmp_path / "runs" / "sweep.json").write_text(json.dumps({"format": 1, "name": "t"}))
    real = lifecycle.write_json

    def killed(path, payload):
        if path.name == "metrics.json":
            raise SystemExit(137)  # the process dies after scores.csv, before metrics.json
        real(path, payload)

    monkeypatch.setattr(lifecycle, "write_json", killed)
    with pytest.raises(SystemExit):
        evaluate_run(run, force=True)
    monkeypatch.setattr(lifecycle, "write_json", real)
    assert json.loads((run / "status.json").read_text())["status"] == "evaluating"
    assert list(collect_results(tmp_path / "runs")["status"]) == ["evaluating"]  # not read as finished
    # and where the status says finished but the files are of two evaluations, the report refuses
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "status": "finished"}))
    with pytest.raises(UserInputError, match="come from different evaluations"):
        collect_results(tmp_path / "runs")
    evaluate_run(run, force=True)  # the repair the message names
    assert list(collect_results(tmp_path / "runs")["status"]) == ["finished"]


@pytest.mark.slow
def test_predict_scores_the_good_images_and_lists_the_bad_ones(tmp_path):
    """Issue 37 item 10, failed before: one bad file stopped `predict` and nothing was scored; `img.png` beside
    `img.jpg` said "the same image file given twice". Now the readable images are scored, the others listed with
    their reason (unreadable.csv, and on the terminal) and the exit is non-zero; the twins are named."""
    from PIL import Image

    train_run(tiny_task(), "patchcore", tmp_path / "pc", progress=False, profile="tiny")
    rng = np.random.default_rng(0)
    (tmp_path / "new").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "new" / name)
    (tmp_path / "new" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = runner.invoke(
        app, ["predict", "--run", str(tmp_path / "pc"), str(tmp_path / "new"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1 and "broken.png" in result.output
    assert sorted(pd.read_csv(tmp_path / "out" / "scores.csv")["id"]) == ["a", "b"]
    assert list(pd.read_csv(tmp_path / "out" / "unreadable.csv")["path"]) == [str(tmp_path / "new" / "broken.png")]
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "new" / "a.jpg")
    twins = runner.invoke(app, ["predict", "--run", str(tmp_path / "pc"), str(tmp_path / "new")])
    assert twins.exit_code == 2 and "a.png" in twins.output and "a.jpg" in twins.output


@pytest.mark.slow
def test_data_changed_after_training_is_said_by_every_evaluation_bench_and_the_report(tmp_path):
    """Issue 37 item 3, failed before: adding, removing or editing images and re-evaluating printed new numbers with
    no word; data.json was overwritten by the first re-evaluation, so a second recorded the changed data as "trained
    on" and "same data as training: true"; bench skipped finished runs on changed data without comment."""
    import time as _time

    from PIL import Image

    from medrecontrast.bench import SweepConfig, build_report, plan_sweep, run_sweep
    from medrecontrast.run import evaluate_run

    rng = np.random.default_rng(1)
    data = layouts.folder(tmp_path / "scans")
    config = SweepConfig(
        tasks=[f"folder:{data}"],
        methods=["patchcore"],
        seeds=[0],
        profile="tiny",
        out=str(tmp_path / "runs"),
        report=str(tmp_path / "report"),
        options={"image_size": 32},
    )
    run_sweep(config, progress=False)
    [run] = list((tmp_path / "runs").glob("*/patchcore/seed-0"))
    _time.sleep(0.01)
    Image.fromarray(rng.integers(0, 255, (24, 24)).astype(np.uint8)).save(data / "test" / "ABN" / "new.png")
    Image.fromarray(rng.integers(0, 120, (24, 24)).astype(np.uint8)).save(data / "test" / "NORMAL" / "0.png")
    with pytest.warns(UserWarning, match=r"finished on other files than the task has now \(test: 1 added"):
        plan_sweep(config)
    for _ in range(2):
        with pytest.warns(
            UserWarning, match=r"changed since the run was trained \(test: 1 added \(ABN/new\), 1 changed"
        ):
            evaluate_run(run, force=True)
    history = json.loads((run / "evaluations.json").read_text())
    assert [entry["same_data_as_training"] for entry in history] == [False, False]
    assert history[0]["trained_on"] == history[1]["trained_on"]  # the training record, never overwritten
    text = build_report(tmp_path / "runs", tmp_path / "report").read_text()
    assert "evaluated on files that changed since it was trained (test: 1 added (ABN/new)" in text
