"""One training run (task, method, seed) in its own folder: the API behind ``train``, ``evaluate`` and ``predict``.

Each module holds one job: :mod:`.config` what a run is and where it computes (:class:`RunConfig`,
:class:`Runtime`, :func:`resolve_run_config`), :mod:`.environment` where a result was produced,
:mod:`.split` the hold-out split and datasets, :mod:`.artefacts` what a run writes, :mod:`.prediction`
scoring new images, :mod:`.lifecycle` claiming, training, finishing and re-evaluating.
"""

from medrecontrast.run.artefacts import (
    DATA_RECORD,
    EVALUATIONS,
    EXAMPLES,
    PIXEL_STATISTICS,
    display_image,
    evaluate_detector,
    example_indices,
)
from medrecontrast.run.config import (
    PROFILES,
    RUN_FORMAT,
    RUN_KEYS,
    RUNTIME_FIELDS,
    RunConfig,
    Runtime,
    accepted_keys,
    default_profile,
    detector_options,
    protocol_label,
    read_run_config,
    resolve_run_config,
    run_config,
)
from medrecontrast.run.environment import cpu_model, environment
from medrecontrast.run.export import ExportParityError, export_run, verify_export
from medrecontrast.run.lifecycle import evaluate_run, run_training, train_run
from medrecontrast.run.prediction import predict_images
from medrecontrast.run.split import HOLDOUT_SEED, groups_of_test_images, run_datasets, split_holdout

__all__ = [
    "ExportParityError",
    "export_run",
    "verify_export",
    "DATA_RECORD",
    "EVALUATIONS",
    "EXAMPLES",
    "HOLDOUT_SEED",
    "PIXEL_STATISTICS",
    "PROFILES",
    "RUNTIME_FIELDS",
    "RUN_FORMAT",
    "RUN_KEYS",
    "RunConfig",
    "Runtime",
    "accepted_keys",
    "cpu_model",
    "default_profile",
    "detector_options",
    "display_image",
    "environment",
    "evaluate_detector",
    "evaluate_run",
    "example_indices",
    "groups_of_test_images",
    "predict_images",
    "protocol_label",
    "read_run_config",
    "resolve_run_config",
    "run_config",
    "run_datasets",
    "run_training",
    "split_holdout",
    "train_run",
]
