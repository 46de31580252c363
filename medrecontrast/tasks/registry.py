"""Task names -> :class:`Task`: ``aptos``, ``oct``, ``isic[:test]``, ``mvtec[:<class>]``,
``visa[:<class>]``, ``folder:<path>`` and the built-in ``synth-*`` tasks."""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

from medrecontrast.errors import UserInputError
from medrecontrast.tasks.aptos import (
    APTOS_LAYOUT,
    APTOS_SPLIT_SEED,
    APTOS_TRAIN_NORMALS,
    load_aptos,
)
from medrecontrast.tasks.base import Hyperparameters, Protocol, Task
from medrecontrast.tasks.folder import FOLDER_LAYOUT, load_folder
from medrecontrast.tasks.isic2018 import ISIC_LAYOUT, ISIC_PROTOCOLS, load_isic2018
from medrecontrast.tasks.mvtec import (
    MVTEC_BN_EVAL,
    MVTEC_CLASSES,
    MVTEC_LAYOUT,
    load_mvtec,
)
from medrecontrast.tasks.oct2017 import OCT_LAYOUT, load_oct2017
from medrecontrast.tasks.synthetic import (
    SYNTHETIC_GENERATORS,
    load_synthetic,
    synthetic_folder,
)
from medrecontrast.tasks.visa import VISA_BN_EVAL, VISA_CLASSES, VISA_LAYOUT, load_visa

ALIASES = {"oct2017": "oct", "isic2018": "isic"}
SYNTHETIC_TASKS = tuple(SYNTHETIC_GENERATORS)
SYNTHETIC_DEFAULTS = {"size": 128, "n_train": 64, "n_test_normal": 24, "n_test_abnormal": 24, "seed": 0}


def _aptos(n_train: int = APTOS_TRAIN_NORMALS, split_seed: int = APTOS_SPLIT_SEED) -> Task:
    return Task(
        name="aptos", family="aptos", modality="fundus",
        description="APTOS 2019 blindness detection; normal = no diabetic retinopathy (grade 0)",
        protocol=Protocol("paper", "1000 grade-0 images drawn as prepare_aptos.py (random.seed(1))", "remaining grade-0 + all grades 1-4", has_masks=False),
        image_size=256, crop_size=None, hparams=Hyperparameters(iters=1000, batch_size=32, encoder_bn_train=True),
        list_items=load_aptos, folder="aptos", layout=APTOS_LAYOUT, fundus_crop=True,
        options={"n_train": n_train, "split_seed": split_seed},
    )


def _oct() -> Task:
    return Task(
        name="oct", family="oct2017", modality="OCT",
        description="OCT2017 (Kermany); normal = NORMAL, abnormal = CNV, DME, DRUSEN",
        protocol=Protocol("paper", "train/NORMAL", "the whole official test/ folder", has_masks=False),
        image_size=256, crop_size=None, hparams=Hyperparameters(iters=1000, batch_size=32, encoder_bn_train=False),
        list_items=load_oct2017, folder="oct2017", layout=OCT_LAYOUT,
    )


def _isic(protocol: str) -> Task:
    if protocol not in ISIC_PROTOCOLS:
        raise UserInputError(f"unknown ISIC2018 protocol '{protocol}'; use 'isic' (paper: Validation set) or 'isic:test' (Test set).")
    test_set = ISIC_PROTOCOLS[protocol]
    return Task(
        name="isic" if protocol == "val" else f"isic:{protocol}", family="isic2018", modality="dermoscopy",
        description=f"ISIC2018 Task 3; normal = NV (nevus), abnormal = the 6 other classes; test = {test_set} set",
        protocol=Protocol("paper" if protocol == "val" else "medianomaly", "NV images of the Training set", f"the whole {test_set} set", has_masks=False),
        image_size=256, crop_size=224, hparams=Hyperparameters(iters=2000, batch_size=32, encoder_bn_train=True, image_score="mean"),
        list_items=load_isic2018, folder="isic2018", layout=ISIC_LAYOUT, options={"protocol": protocol},
    )


def _mvtec(cls: str) -> Task:
    return Task(
        name=f"mvtec:{cls}", family="mvtec", modality="industrial",
        description=f"MVTec AD '{cls}'",
        protocol=Protocol("official", "train/good", "test/* with pixel masks", has_masks=True),
        image_size=256, crop_size=None,
        hparams=Hyperparameters(iters=2000, batch_size=16, encoder_bn_train=cls not in MVTEC_BN_EVAL),
        list_items=load_mvtec, folder=f"mvtec/{cls}", layout=MVTEC_LAYOUT,
    )


def _visa(cls: str) -> Task:
    return Task(
        name=f"visa:{cls}", family="visa", modality="industrial",
        description=f"VisA '{cls}' (official 1cls split)",
        protocol=Protocol("1cls", "split=train", "split=test, masks binarised", has_masks=True),
        image_size=256, crop_size=None,
        hparams=Hyperparameters(iters=3000, batch_size=16, encoder_bn_train=cls not in VISA_BN_EVAL),
        list_items=load_visa, folder="visa", layout=VISA_LAYOUT, options={"object": cls},
    )


def _folder(path: str, slice_axis: int = 2) -> Task:
    if not path:
        raise UserInputError("task 'folder:' needs a path, e.g. folder:/data/my_xrays")
    resolved = Path(path).expanduser().resolve()
    return Task(
        name=f"folder:{path}", family="folder", modality="any",
        description=f"your own images under {resolved}",
        protocol=Protocol("folder", "train/NORMAL", "test/NORMAL + test/<other classes>", has_masks=None),
        image_size=256, crop_size=None, hparams=Hyperparameters(iters=1000, batch_size=16),
        list_items=load_folder, layout=FOLDER_LAYOUT, locate=lambda task, _: Path(task.options["path"]),
        options={"path": str(resolved), "slice_axis": slice_axis},
    )


def _synthetic(name: str, **options) -> Task:
    modality, hparams = {
        "synth-fundus": ("fundus", Hyperparameters(iters=1000, batch_size=32)),
        "synth-oct": ("OCT", Hyperparameters(iters=1000, batch_size=32, encoder_bn_train=False)),
        "synth-skin": ("dermoscopy", Hyperparameters(iters=2000, batch_size=32, image_score="mean")),
    }[name]
    unknown = set(options) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise UserInputError(f"unknown option(s) {sorted(unknown)} for task '{name}'; known: {sorted(SYNTHETIC_DEFAULTS)}")
    opts = {**SYNTHETIC_DEFAULTS, **options}
    anomalies = " / ".join(SYNTHETIC_GENERATORS[name][1])
    return Task(
        name=name, family="synthetic", modality=modality,
        description=f"built-in, generated on first use; anomalies: {anomalies}",
        protocol=Protocol("synthetic", f"{opts['n_train']} normals", f"{opts['n_test_normal']} normal + {opts['n_test_abnormal']} abnormal, with masks", has_masks=True),
        image_size=opts["size"], crop_size=None, hparams=hparams,
        list_items=load_synthetic, layout="generated automatically in the cache folder",
        locate=lambda task, _: synthetic_folder(task), options=opts,
    )


UNIFIED_HPARAMS = Hyperparameters(iters=5000, batch_size=16, encoder_bn_train=False, image_score="top1", unified=True)  # *_multiclass.py
UNIFIED_FAMILIES = {"mvtec-unified": ("mvtec", MVTEC_CLASSES, "MVTec AD"), "visa-unified": ("visa", VISA_CLASSES, "VisA")}


def _unified(name: str, members: list[Task], what: str) -> Task:
    """One model for all ``members`` (the paper's unified multi-class setting), evaluated per member and on average."""
    if len(members) < 2:
        raise UserInputError(f"task '{name}' needs at least two member tasks, e.g. unified:synth-fundus+synth-oct")
    if len({m.name for m in members}) != len(members):
        raise UserInputError(f"task '{name}' lists a member twice")
    sizes = {(m.image_size, m.crop_size) for m in members}
    if len(sizes) > 1:
        raise UserInputError(f"task '{name}': its members have different image sizes {sorted(sizes, key=str)}; a unified model needs one size")
    nested = [m.name for m in members if m.members]
    if nested:
        raise UserInputError(f"task '{name}': a member cannot itself be unified ({', '.join(nested)})")
    first = members[0]
    return Task(
        name=name, family="unified", modality=first.modality if len({m.modality for m in members}) == 1 else "mixed",
        description=f"one model for {what}, evaluated per class and on the mean",
        protocol=Protocol("unified", f"the normals of all {len(members)} classes together", "each class's test set; metrics per class and their mean",
                          has_masks=first.protocol.has_masks if len({m.protocol.has_masks for m in members}) == 1 else None),
        image_size=first.image_size, crop_size=first.crop_size, hparams=UNIFIED_HPARAMS, list_items=None, layout=first.layout,
        fundus_crop=first.fundus_crop, members=tuple(members),
    )


def get_task(name: str, **options) -> Task:
    """The task called ``name`` (aliases allowed); ``options`` go to its loader (e.g. ``slice_axis``)."""
    try:
        task = _build_task(name, **options)
    except TypeError as exc:  # a builder that does not take one of the options
        raise UserInputError(f"task '{name}' takes no option(s) {', '.join(sorted(options))} ({exc}).") from None
    return replace(task, user_options=dict(options))


def _build_task(name: str, **options) -> Task:
    family, _, variant = name.partition(":")
    family = ALIASES.get(family.lower(), family.lower())
    if family in UNIFIED_FAMILIES and not variant:
        if options:
            raise TypeError(f"unexpected options {sorted(options)}")
        prefix, classes, label = UNIFIED_FAMILIES[family]
        return _unified(family, [_build_task(f"{prefix}:{c}") for c in classes], f"all {len(classes)} {label} classes")
    if family == "unified":
        if options:
            raise TypeError(f"unexpected options {sorted(options)}")
        parts = [p for p in variant.split("+") if p]
        return _unified(f"unified:{'+'.join(parts)}", [_build_task(p) for p in parts], " + ".join(parts))
    if family == "aptos" and not variant:
        return _aptos(**options)
    if family == "oct" and not variant:
        return _oct(**options)
    if family == "isic":
        return _isic(variant or "val", **options)
    if family == "mvtec" and variant:
        return _mvtec(_check_class(variant, MVTEC_CLASSES, "MVTec AD"), **options)
    if family == "visa" and variant:
        return _visa(_check_class(variant, VISA_CLASSES, "VisA"), **options)
    if family == "folder":
        return _folder(variant, **options)
    if family in SYNTHETIC_TASKS and not variant:
        return _synthetic(family, **options)
    raise UserInputError(_unknown_message(name))


def expand_tasks(names: list[str] | tuple[str, ...], **options) -> list[Task]:
    """Resolve names to tasks, expanding ``mvtec`` and ``visa`` to all their classes."""
    tasks = []
    for name in names:
        lowered = name.lower()
        if lowered == "mvtec":
            tasks.extend(_mvtec(c) for c in MVTEC_CLASSES)
        elif lowered == "visa":
            tasks.extend(_visa(c) for c in VISA_CLASSES)
        else:
            tasks.append(get_task(name, **(options if lowered.split(":")[0] in ("folder", "aptos", *SYNTHETIC_TASKS) else {})))
    return tasks


def task_names() -> list[str]:
    """Every name `get_task`/`expand_tasks` understands, as `medrecontrast tasks` lists them."""
    return ["aptos", "oct", "isic", "isic:test", "mvtec", "mvtec:<class>", "visa", "visa:<class>", "mvtec-unified", "visa-unified",
            "unified:<task>+<task>", "folder:<path>", *SYNTHETIC_TASKS]


def registry_rows() -> list[dict]:
    """One row per task kind, with what it is and what it trains with."""
    examples = [_aptos(), _oct(), _isic("val"), _isic("test"), _mvtec("bottle"), _visa("candle"), _build_task("mvtec-unified"), _build_task("visa-unified"),
                _build_task("unified:synth-fundus+synth-oct"), _folder("<path>"), *(_synthetic(n) for n in SYNTHETIC_TASKS)]
    names = ["aptos", "oct (oct2017)", "isic (isic2018)", "isic:test", "mvtec | mvtec:<class>", "visa | visa:<class>", "mvtec-unified", "visa-unified",
             "unified:<task>+<task>", "folder:<path>", *SYNTHETIC_TASKS]
    rows = []
    for name, task in zip(names, examples):
        h = task.hparams
        rows.append({
            "task": name,
            "modality": task.modality,
            "train | test": f"{task.protocol.train} | {task.protocol.test}",
            "masks": {True: "yes", False: "no", None: "optional"}[task.protocol.has_masks],
            "size": f"{task.image_size}" + (f"/{task.crop_size}" if task.crop_size else ""),
            "iters x batch": f"{h.iters}x{h.batch_size}",
            "enc. BN": "train" if h.encoder_bn_train else "eval",
            "score": "top 1 %" if h.image_score == "top1" else h.image_score,
        })
    rows[4]["enc. BN"] = rows[5]["enc. BN"] = "train*"
    generic = names.index("unified:<task>+<task>")
    rows[generic].update({"modality": "as members", "masks": "as members", "size": "members'"})
    rows[generic]["train | test"] = "the normals of all listed tasks together | each task's test set; metrics per task and their mean"
    return rows


BN_FOOTNOTE = (
    f"* encoder BatchNorm in eval mode for MVTec {', '.join(sorted(MVTEC_BN_EVAL))} and VisA {', '.join(sorted(VISA_BN_EVAL))}."
)


def _check_class(cls: str, classes: tuple[str, ...], dataset: str) -> str:
    if cls in classes:
        return cls
    raise UserInputError(f"'{cls}' is not a {dataset} class; known classes: {', '.join(classes)}")


def _unknown_message(name: str) -> str:
    known = task_names()
    close = difflib.get_close_matches(name.lower(), [k.split(":")[0] for k in known], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown task '{name}'.{hint} Known tasks: {', '.join(known)} (run `medrecontrast tasks`)."
