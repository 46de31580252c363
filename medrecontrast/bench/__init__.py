"""The benchmark: sweeps of tasks x methods x seeds, their results, tables, figures and report."""

from medrecontrast.bench.config import SweepConfig, load_sweep_config
from medrecontrast.bench.executors import Outcome, execute_run, run_local, run_ray
from medrecontrast.bench.figures import make_figures
from medrecontrast.bench.report import build_report, report_folder
from medrecontrast.bench.results import collect_results, finished
from medrecontrast.bench.store import RunSpec, run_folder, run_status
from medrecontrast.bench.sweep import plan_sweep, run_sweep
from medrecontrast.bench.tables import (
    cost_table,
    paper_comparison,
    paper_table,
    summary_frame,
    write_tables,
)

__all__ = [
    "Outcome",
    "RunSpec",
    "SweepConfig",
    "build_report",
    "collect_results",
    "cost_table",
    "execute_run",
    "finished",
    "load_sweep_config",
    "make_figures",
    "paper_comparison",
    "paper_table",
    "plan_sweep",
    "report_folder",
    "run_folder",
    "run_local",
    "run_ray",
    "run_status",
    "run_sweep",
    "summary_frame",
    "write_tables",
]
