"""The benchmark scripts run end to end on tiny inputs, so the published tables can always be remade."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "data_pipeline": ["--images", "6", "--size", "32", "--source-size", "48", "--workers", "0"],
    "training_step": ["--size", "64", "--batch", "2", "--steps", "1"],
    "patchcore_scaling": ["--images", "4", "8", "--size", "64", "--test-images", "4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_script_prints_a_table_and_writes_its_csv(script, tmp_path):
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), *TINY[script], "--results", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / f"{script}.csv")
    assert len(table) > 0 and table.notna().all().all()
