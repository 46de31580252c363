"""Task names, aliases, expansion and the per-task settings of the released recontrast_<task>.py scripts
(docs/tasks.md, "Paper fidelity")."""

import pytest

from medrecontrast.errors import UserInputError
from medrecontrast.tasks import expand_tasks, get_task, registry_rows, task_names
from medrecontrast.tasks.mvtec import MVTEC_CLASSES
from medrecontrast.tasks.visa import VISA_CLASSES


def test_aliases():
    assert get_task("oct2017").name == "oct"
    assert get_task("ISIC2018").name == "isic"
    assert get_task("isic:test").protocol.name == "medianomaly"


def test_expansion_of_dataset_families():
    tasks = expand_tasks(["mvtec", "visa", "aptos"])
    assert len(MVTEC_CLASSES) == 15 and len(VISA_CLASSES) == 12
    assert [t.name for t in tasks[:15]] == [f"mvtec:{c}" for c in MVTEC_CLASSES]
    assert len(tasks) == 28 and tasks[-1].name == "aptos"


@pytest.mark.parametrize(
    "name,iters,batch,size,crop,bn,score",
    [
        ("aptos", 1000, 32, 256, None, True, "max"),
        ("oct", 1000, 32, 256, None, False, "max"),
        ("isic", 2000, 32, 256, 224, True, "mean"),
        ("mvtec:bottle", 2000, 16, 256, None, True, "max"),
        ("mvtec:screw", 2000, 16, 256, None, False, "max"),
        ("visa:candle", 3000, 16, 256, None, True, "max"),
        ("visa:cashew", 3000, 16, 256, None, False, "max"),
    ],
)
def test_hyperparameters_follow_the_paper(name, iters, batch, size, crop, bn, score):
    from medrecontrast.models.recontrast import ReContrast

    task = get_task(name)
    h = ReContrast.task_options(task)  # issue 19: a method's per-task settings live in its module
    assert (h["iters"], h["batch_size"], task.image_size, task.crop_size, h["encoder_bn_train"], h["image_score"]) == (
        iters,
        batch,
        size,
        crop,
        bn,
        score,
    )


def test_masks_by_protocol():
    assert get_task("mvtec:grid").protocol.has_masks and get_task("visa:pcb2").protocol.has_masks
    assert not get_task("aptos").protocol.has_masks and not get_task("oct").protocol.has_masks
    assert get_task("folder:/x").protocol.has_masks is None  # optional


@pytest.mark.parametrize(
    "name,message",
    [
        ("mvtec:bottel", "not a MVTec AD class"),
        ("visa:pcb9", "not a VisA class"),
        ("aptso", "Did you mean 'aptos'"),
        ("isic:train", "unknown ISIC2018 protocol"),
        ("folder:", "needs a path"),
        ("imagenet", "unknown task 'imagenet'"),
    ],
)
def test_unknown_names(name, message):
    with pytest.raises(UserInputError, match=message):
        get_task(name)


def test_unknown_options():
    with pytest.raises(UserInputError, match="unknown option"):
        get_task("synth-oct", pixels=3)
    with pytest.raises(UserInputError, match="task 'mvtec:bottle' takes no option\\(s\\) slice_axis"):
        get_task("mvtec:bottle", slice_axis=0)
    assert get_task("aptos", n_train=20).user_options == {"n_train": 20}  # what a run records to rebuild it


def test_registry_rows_cover_every_name():
    rows = registry_rows()
    assert len(rows) == 30 and {"task", "modality", "size", "masks", "patients"} <= set(
        rows[0]
    )  # issue 19: method settings are listed by `methods`
    assert all(n.split(":")[0].split(" ")[0] in " ".join(r["task"] for r in rows) for n in task_names())


def test_unified_tasks():
    """One model for all classes (recontrast_{mvtec,visa}_multiclass.py): 5000 x 16, encoder BN in eval, top-1 %
    score."""
    mvtec = get_task("mvtec-unified")
    from medrecontrast.models.recontrast import ReContrast

    h = ReContrast.task_options(mvtec)  # issue 19: a method's per-task settings live in its module
    assert len(mvtec.members) == 15 and h["drop_last"] and (h["iters"], h["batch_size"]) == (5000, 16)
    assert h["encoder_bn_train"] is False and h["image_score"] == "top1"
    assert len(get_task("visa-unified").members) == 12
    mini = get_task("unified:synth-fundus+synth-oct")
    data = mini.load()
    assert {it["group"] for it in data.test} == {"synth-fundus", "synth-oct"}
    assert len({it["id"] for it in data.train + data.test}) == len(data.train) + len(data.test)  # ids stay unique
    with pytest.raises(UserInputError, match="at least two"):
        get_task("unified:synth-oct")
