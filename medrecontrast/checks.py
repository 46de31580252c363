"""The mistakes people make on a command line, answered before torch, MONAI or the models are imported: each check
here is the one the API makes later, with the same message, only earlier."""

from __future__ import annotations

from pathlib import Path

from medrecontrast.errors import UserInputError


def check_inputs(
    *,
    tasks=None,
    methods=None,
    holdout: float | None = None,
    report=None,
    run=None,
    sweep_folder=None,
    images=None,
) -> None:
    """A misspelled task or method, a hold-out out of range, a missing run or sweep folder or image, a report folder
    that is not the suite's: refused now, as the API would refuse it later."""
    if tasks:
        from medrecontrast.tasks import expand_tasks

        expand_tasks(list(tasks))
    if methods:
        from medrecontrast.catalog import check_method_names

        check_method_names(methods)
    if holdout is not None and not 0 <= holdout < 1:
        raise UserInputError(f"holdout must be a fraction in [0, 1), got {holdout!r} (set in --holdout)")
    if report is not None:
        from medrecontrast.paths import claim_report_folder

        claim_report_folder(report, write=False)
    if run is not None:
        from medrecontrast.run.folder import RunFolder  # the run folder's format, without torch

        if not RunFolder(run).has_config():
            raise UserInputError(
                f"{run} is not a run folder (no {RunFolder.CONFIG}): give a folder written by train or bench."
            )
    if sweep_folder is not None and not (Path(sweep_folder) / "sweep.json").is_file():
        raise UserInputError(
            f"{sweep_folder} is not a sweep folder (no sweep.json); run `medrecontrast bench --out {sweep_folder}` "
            "first."
        )
    for image in images or ():
        if not Path(image).exists():
            raise UserInputError(f"{image} does not exist (give image files or folders).")
