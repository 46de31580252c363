"""The training engine: data order, atomic checkpoints, resume equality, NaN guard."""

import pytest
import torch

from medrecontrast import build_detector
from medrecontrast.data.dataset import task_datasets
from medrecontrast.engine import (
    NonFiniteLossError,
    atomic_torch_save,
    batch_indices,
    load_checkpoint,
)
from medrecontrast.errors import UserInputError
from medrecontrast.tasks import get_task


@pytest.fixture(scope="module")
def tiny_train():
    data = get_task("synth-oct", size=32, n_train=10, n_test_normal=1, n_test_abnormal=1).load()
    return task_datasets(data, image_size=32, cache="memory")[0]


def rc(**overrides):
    config = dict(backbone="resnet18", pretrained=False, iters=6, batch_size=4, checkpoint_every=2)
    return build_detector("recontrast", **{**config, **overrides})


def test_data_order_is_a_function_of_seed_and_iteration():
    stream = batch_indices(10, 4, seed=3, start_iteration=0)
    first = [next(stream) for _ in range(7)]
    # the official per-task loaders keep the last incomplete batch (drop_last=False): 4, 4, 2 per epoch
    assert [len(b) for b in first] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(first[0] + first[1] + first[2]) == list(range(10))  # every image once per epoch
    resumed = batch_indices(10, 4, seed=3, start_iteration=5)
    assert [next(resumed) for _ in range(2)] == first[5:7]
    dropped = batch_indices(10, 4, seed=3, start_iteration=0, drop_last=True)  # the unified scripts
    assert [len(next(dropped)) for _ in range(4)] == [4, 4, 4, 4]
    assert first[:2] != [next(batch_indices(10, 4, seed=4, start_iteration=0)) for _ in range(2)]
    tiny = batch_indices(3, 8, seed=0, start_iteration=0)
    assert sorted(next(tiny)) == [0, 1, 2]  # a dataset smaller than one batch still trains


@pytest.mark.slow
def test_resume_after_interruption_reaches_the_same_weights(tiny_train, tmp_path):
    straight = rc().fit(tiny_train, checkpoint=tmp_path / "a.pt", progress=False)

    interrupted = rc()
    original = interrupted.training_loss

    def crash_at_iteration_5(model, images, iteration):
        if iteration == 5:
            raise KeyboardInterrupt  # e.g. Ctrl-C or a preempted node
        return original(model, images, iteration)

    interrupted.training_loss = crash_at_iteration_5
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(tiny_train, checkpoint=tmp_path / "b.pt", progress=False)
    assert load_checkpoint(tmp_path / "b.pt", {})["iteration"] == 4

    resumed = rc().fit(tiny_train, checkpoint=tmp_path / "b.pt", resume=True, progress=False)
    assert resumed.training_.resumed_from == 4 and resumed.training_.iterations_run == 2
    assert resumed.training_.losses == straight.training_.losses
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_kind(tiny_train, tmp_path):
    rc(iters=2).fit(tiny_train, checkpoint=tmp_path / "c.pt", progress=False)
    rd = build_detector("rd4ad", backbone="resnet18", pretrained=False, iters=4, batch_size=4)
    with pytest.raises(
        UserInputError, match="belongs to another run .*method: checkpoint has 'recontrast', this run 'rd4ad'"
    ):
        rd.fit(tiny_train, checkpoint=tmp_path / "c.pt", resume=True, progress=False)


@pytest.mark.slow
def test_nan_loss_stops_the_run_with_the_documented_error(tiny_train, tmp_path):
    detector = rc()
    original = detector.training_loss
    detector.training_loss = lambda model, images, iteration: (
        original(model, images, iteration) * (float("nan") if iteration == 3 else 1.0)
    )
    # the fourth iteration (0-based 3), as the bar counts: it said "iteration 3" while the bar showed 4
    with pytest.raises(NonFiniteLossError, match="the loss became nan at iteration 4 of"):
        detector.fit(tiny_train, checkpoint=tmp_path / "n.pt", progress=False)
    assert load_checkpoint(tmp_path / "n.pt", {})["iteration"] == 2  # the last good checkpoint survives


def test_no_half_stable_variant_is_offered():
    """The authors' stable recipe (PartialNorm2D, eps, optimiser resets and pauses, ...) is not
    implemented, so no option claims to be it."""
    with pytest.raises(UserInputError, match="unknown option.*reset_optimizer_every"):
        rc(reset_optimizer_every=500)


@pytest.mark.slow
def test_no_gradient_clipping_by_default(tiny_train, monkeypatch):
    """Every clip_grad_norm_ in the released training scripts is commented out."""
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(k))
    from medrecontrast.models.rd4ad import RD4ADConfig
    from medrecontrast.models.recontrast import ReContrastConfig

    assert ReContrastConfig().grad_clip_norm is None and RD4ADConfig().grad_clip_norm is None
    detector = rc(iters=2)
    assert detector.config.grad_clip_norm is None
    detector.fit(tiny_train, progress=False)
    assert calls == []
    rc(iters=2, grad_clip_norm=0.5).fit(tiny_train, progress=False)  # still an explicit option
    assert calls and calls[0]["max_norm"] == 0.5


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"value": torch.tensor(1)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"value": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["value"].item() == 1


@pytest.mark.slow
def test_a_resumed_run_reports_the_training_time_of_every_segment(tiny_train, tmp_path):
    """Resumed runs once recorded only the last segment (train_s 2.0 s, train_images_per_s 0.0 instead of 96.8 s)."""
    import time

    interrupted = rc()
    original = interrupted.training_loss

    def slow_then_crash(model, images, iteration):
        if iteration == 5:
            raise KeyboardInterrupt
        time.sleep(0.3)
        return original(model, images, iteration)

    interrupted.training_loss = slow_then_crash
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(tiny_train, checkpoint=tmp_path / "b.pt", progress=False)
    first_segment = load_checkpoint(tmp_path / "b.pt", {})["seconds"]
    assert first_segment >= 4 * 0.3
    resumed = rc().fit(tiny_train, checkpoint=tmp_path / "b.pt", resume=True, progress=False)
    assert resumed.train_seconds_ >= first_segment + resumed.training_.seconds - 1e-9
    assert resumed.images_seen_ == 6 * 4  # every iteration's batch, not only the resumed segment's


@pytest.mark.slow
def test_the_terminal_bar_never_shows_a_nan_loss_before_the_first_iteration(tiny_train, monkeypatch, capsys):
    """Issue 23 item 3: the bar was seeded with NaN, so every run showed `loss nan` while its first
    iteration ran, although a NaN loss stops a run; it shows a dash until the first loss is known."""
    import time

    from rich.console import Console

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    detector = rc(iters=2)
    original = detector.training_loss

    def slow_first(model, images, iteration):
        if iteration == 0:
            time.sleep(0.5)  # the bar redraws 10 times a second: the first state is drawn
        return original(model, images, iteration)

    detector.training_loss = slow_first
    detector.fit(tiny_train, progress=True)
    drawn = capsys.readouterr().err
    assert "training" in drawn and "loss –" in drawn and "nan" not in drawn
