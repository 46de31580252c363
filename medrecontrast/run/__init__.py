"""One training run (task, method, seed) in its own folder: the API behind ``train``, ``evaluate`` and ``predict``.

Each module holds one job: :mod:`.config` what a run is and where it computes (:class:`RunConfig`,
:class:`Runtime`, :func:`resolve_run_config`), :mod:`.folder` the run folder's format (:class:`RunFolder`, the
only code that knows its file names), :mod:`.environment` where a result was produced,
:mod:`.split` the hold-out split and datasets, :mod:`.artefacts` what a run writes, :mod:`.prediction`
scoring new images, :mod:`.lifecycle` claiming, training, finishing and re-evaluating.
"""

import importlib

# name -> the module that defines it, imported on first use (PEP 562): ``medrecontrast.run.folder`` (the run folder's
# format) is read by the CLI's quick checks, which answer a mistake before torch is imported; importing the package
# eagerly would load every run module and torch with it.
_PUBLIC = {
    "EXAMPLES": "medrecontrast.run.artefacts",
    "ExportParityError": "medrecontrast.run.export",
    "HOLDOUT_SEED": "medrecontrast.run.split",
    "PROFILES": "medrecontrast.run.config",
    "RUNTIME_FIELDS": "medrecontrast.run.config",
    "RUN_FORMAT": "medrecontrast.run.folder",
    "RUN_KEYS": "medrecontrast.run.config",
    "RunConfig": "medrecontrast.run.config",
    "RunFolder": "medrecontrast.run.folder",
    "Runtime": "medrecontrast.run.config",
    "accepted_keys": "medrecontrast.run.config",
    "cpu_model": "medrecontrast.run.environment",
    "default_profile": "medrecontrast.run.config",
    "detector_options": "medrecontrast.run.config",
    "display_image": "medrecontrast.run.artefacts",
    "environment": "medrecontrast.run.environment",
    "evaluate_detector": "medrecontrast.run.artefacts",
    "evaluate_run": "medrecontrast.run.lifecycle",
    "example_indices": "medrecontrast.run.artefacts",
    "export_run": "medrecontrast.run.export",
    "groups_of_test_images": "medrecontrast.run.split",
    "predict_images": "medrecontrast.run.prediction",
    "protocol_label": "medrecontrast.run.config",
    "read_run_config": "medrecontrast.run.folder",
    "resolve_run_config": "medrecontrast.run.config",
    "run_config": "medrecontrast.run.config",
    "run_datasets": "medrecontrast.run.split",
    "run_folders": "medrecontrast.run.folder",
    "run_training": "medrecontrast.run.lifecycle",
    "split_holdout": "medrecontrast.run.split",
    "train_run": "medrecontrast.run.lifecycle",
    "verify_export": "medrecontrast.run.export",
}


# the submodule `environment` shares its function's name: bound now (the module is light), or importing the submodule
# would leave the package attribute naming the module
from medrecontrast.run.environment import cpu_model, environment  # noqa: E402, F401


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = sorted([*_PUBLIC, "cpu_model", "environment"])
