"""The benchmark scripts run end to end on tiny inputs, so the published tables can always be remade."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "data_pipeline": ["--images", "6", "--size", "32", "--source-size", "48", "--workers", "0"],
    "real_images": ["--test-images", "24", "--train-images", "8", "--size", "64", "--no-anomalib"],
}
NEEDS_SHARED_DATA = {"real_images"}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_script_prints_a_table_and_writes_its_csv(script, tmp_path):
    if script in NEEDS_SHARED_DATA:
        shared("eyepacs_fundus")  # skips, with the reason, where the real samples are absent
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), *TINY[script], "--results", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / f"{script}.csv")
    assert len(table) > 0 and table.notna().all().all()


@pytest.mark.slow
def test_gpu_script_runs_every_step_on_tiny_inputs(tmp_path):
    """benchmarks/gpu.sh in SMOKE mode: the same scripts and flags as on a GPU, on tiny inputs, so a
    lent GPU's minutes are never lost to a wrong argument."""
    environment = {**os.environ, "SMOKE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), str(tmp_path / "wheels"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        cwd=BENCHMARKS.parent,
    )
    log = (tmp_path / "gpu.log").read_text()
    assert "=== throughput: exit 0" in log and "=== patchcore-scaling: exit 0" in log, result.stdout[-3000:]
    throughput, scaling = pd.read_csv(tmp_path / "throughput.csv"), pd.read_csv(tmp_path / "patchcore_scaling.csv")
    assert set(throughput["method"]) == {"recontrast", "rd4ad", "patchcore"} and set(throughput["variant"]) == {"fp32"}
    trainable = throughput[throughput["method"] != "patchcore"]
    assert trainable.notna().all().all() and (trainable["of peak %"] > 0).all()
    assert scaling["train images"].tolist() == [4, 8] and scaling.notna().all().all()
    if importlib.util.find_spec("anomalib") is None:
        assert "anomalib is not installed" in log
    else:
        assert "=== peers: exit 0" in log
        peers = pd.read_csv(tmp_path / "peers.csv")
        assert {"fit s", "train s/step", "image AUROC %"} <= set(peers["measure"])


def test_the_declared_differences_are_the_measured_ones():
    """The documentation's sizes of the released code's mask rule and AUPRO thresholds (docs/tasks.md) are what
    the script measures on the real files (the crop row needs opencv, which the suite does not install)."""
    shared("mvtec_grid")  # skips, with the reason, where the real masks are absent
    spec = importlib.util.spec_from_file_location("released_differences", BENCHMARKS / "released_differences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = Path(shared("mvtec_grid")).parent
    (mask_row,) = module.mask_rule(data)
    assert "3,885 anomalous pixels" in mask_row and "| 5,278 |" in mask_row and "-26.4 %" in mask_row
    readme = (BENCHMARKS.parent / "docs" / "tasks.md").read_text()
    assert "3,885 pixels, ours 5,278 (−26.4 % for theirs)" in readme
