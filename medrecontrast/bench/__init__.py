"""The benchmark: sweeps of tasks x methods x seeds, their results, tables, figures and report."""

from medrecontrast.bench.config import SweepConfig, load_sweep_config
from medrecontrast.bench.executors import Outcome, execute_run, run_local, run_ray
from medrecontrast.bench.figures import make_figures
from medrecontrast.bench.report import WrittenReport, build_report, report_folder, write_report
from medrecontrast.bench.results import collect_results, finished
from medrecontrast.bench.statistics import SweepStatistics, sweep_statistics
from medrecontrast.bench.store import RunSpec, run_folder, run_status
from medrecontrast.bench.sweep import plan_sweep, run_sweep
from medrecontrast.bench.tables import (
    comparison_table,
    cost_table,
    operating_point_table,
    paper_comparison,
    paper_table,
    subtype_table,
    summary_frame,
    write_tables,
)

__all__ = [
    "Outcome",
    "RunSpec",
    "SweepConfig",
    "SweepStatistics",
    "WrittenReport",
    "build_report",
    "write_report",
    "collect_results",
    "comparison_table",
    "cost_table",
    "execute_run",
    "finished",
    "load_sweep_config",
    "make_figures",
    "operating_point_table",
    "paper_comparison",
    "paper_table",
    "plan_sweep",
    "report_folder",
    "run_folder",
    "run_local",
    "run_ray",
    "run_status",
    "run_sweep",
    "subtype_table",
    "summary_frame",
    "sweep_statistics",
    "write_tables",
]
