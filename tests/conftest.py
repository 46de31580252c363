import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDRECONTRAST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test run caches into its own folder, never into the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "medrecontrast-cache"
    monkeypatch.setenv("MEDRECONTRAST_CACHE", str(cache))
    monkeypatch.delenv("MEDRECONTRAST_DATA", raising=False)
    return cache


# --- the tiny settings, the sweep factory and the session's mini sweep ----------------------------------------------
# a built-in task at 32 px with a handful of images: the whole machinery in seconds
TINY_DATA = {"size": 32, "n_train": 8, "n_test_normal": 4, "n_test_abnormal": 4}
MINI_TASKS = ["synth-fundus", "synth-oct"]


def mini_config(out: Path, **changes):
    """A sweep of 2 tasks x 2 methods x 2 seeds at 32 px, a few iterations (``changes`` replace any field)."""
    from medrecontrast.bench import SweepConfig

    settings = dict(
        tasks=MINI_TASKS,
        methods=["rd4ad", "patchcore"],
        seeds=[0, 1],
        profile="tiny",
        out=str(out),
        report=str(Path(out).parent / "report"),
        options={"image_size": 32, "holdout": 0.25},
        method={"rd4ad": {"iters": 3, "batch_size": 4}, "patchcore": {"embed_dim": 32}},
        task={t: {"data": TINY_DATA} for t in MINI_TASKS},
    )
    return SweepConfig(**{**settings, **changes})


@pytest.fixture
def tiny_data() -> dict:
    """The tiny built-in task's data settings (:data:`TINY_DATA`), a fresh copy."""
    return dict(TINY_DATA)


@pytest.fixture
def sweep_config():
    """The sweep factory (:func:`mini_config`): ``sweep_config(out, **changes)``."""
    return mini_config


@pytest.fixture(scope="session")
def mini_sweep(tmp_path_factory):
    """One finished mini sweep (:func:`mini_config`) with its report, built once per session and shared read-only:
    ``(root, outcomes, readme)``, its runs in ``root / "runs"``. A test that changes it copies it first."""
    from medrecontrast.bench import build_report, run_sweep

    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDRECONTRAST_CACHE", str(tmp_path_factory.getbasetemp() / "medrecontrast-cache"))
        outcomes = run_sweep(mini_config(root / "runs"), progress=False)
        readme = build_report(root / "runs", root / "report")
    return root, outcomes, readme


def copy_sweep(mini_sweep, tmp_path) -> Path:
    """A writable copy of the session's mini sweep's runs, in ``tmp_path / "runs"``."""
    root, _, _ = mini_sweep
    shutil.copytree(root / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def shared(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real sample data not available: {path} (see ../shared/data/README.md)")
    return path


# --- the everyday tier ------------------------------------------------------------------------------------------
# `pytest -m "not slow"` is the everyday command: a test that trains (the training loop, a run, anomalib's Engine) or
# starts a process must be marked slow. The hook below proves it for every test that is not: such a test fails,
# naming what it did. MEDRECONTRAST_RECORD_SLOW=FILE records the offenders there instead of failing them.
SLOW_RECORD = os.environ.get("MEDRECONTRAST_RECORD_SLOW")


@pytest.fixture(autouse=True)
def _the_everyday_tier_neither_trains_nor_starts_processes(request, monkeypatch):
    if request.node.get_closest_marker("slow"):
        yield
        return
    import subprocess

    did: list[str] = []
    popen_init = subprocess.Popen.__init__

    def popen(self, *args, **kwargs):
        # a process the test starts itself (its own subprocess.run, or the suite's code it calls), not a library's
        # incidental helper (ctypes' `ldconfig -p`, platform's `uname -p`), which depends on test order
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == subprocess.__file__:
            frame = frame.f_back
        caller = Path(frame.f_code.co_filename).resolve() if frame is not None else None
        if caller is not None and (
            caller.is_relative_to(REPO / "tests") or caller.is_relative_to(REPO / "medrecontrast")
        ):
            did.append(f"started a process {str(args[0] if args else kwargs.get('args'))[:80]!r}")
        return popen_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    try:
        import medrecontrast.engine as engine
        from medrecontrast.run.folder import RunFolder

        result_cls = engine.TrainingResult

        class Recorded(result_cls):  # made by train_loop alone
            def __init__(self, *args, **kwargs):
                did.append("ran the training loop")
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(engine, "TrainingResult", Recorded)
        write_status = RunFolder.write_status

        def status(self, payload):
            if payload.get("status") == "running":
                did.append("started a run")
            return write_status(self, payload)

        monkeypatch.setattr(RunFolder, "write_status", status)
        from medrecontrast.models.anomalib_bridge import AnomalibDetector

        anomalib_fit = AnomalibDetector.fit

        def fit(self, *args, **kwargs):
            did.append("trained an anomalib model")
            return anomalib_fit(self, *args, **kwargs)

        monkeypatch.setattr(AnomalibDetector, "fit", fit)
    except ImportError:
        pass
    yield
    if did:
        if SLOW_RECORD:
            with open(SLOW_RECORD, "a") as record:
                record.write(f"{request.node.nodeid}\t{'; '.join(dict.fromkeys(did))}\n")
        else:
            pytest.fail(
                f"{request.node.nodeid} is not marked slow but {'; '.join(dict.fromkeys(did))}: mark it "
                '@pytest.mark.slow (the everyday tier, `pytest -m "not slow"`, neither trains nor starts processes)'
            )
