"""What resampling patients instead of images changes on a finished sweep: the width of each method's 95 %
interval of image AUROC (seed mean), and every significance verdict of image AUROC (DeLong vs Obuchowski's
clustered DeLong; the paired bootstrap of images vs of patients), for the tasks whose images name their
patients. Both are computed from the same stored scores, with the same seeds and resample counts.

    python benchmarks/patient_intervals.py runs/real-cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from medrecontrast.bench import collect_results  # noqa: E402
from medrecontrast.bench.statistics import MEAN, sweep_statistics  # noqa: E402


def compare(sweep: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = collect_results(sweep)
    by_patient = sweep_statistics(results)
    by_image = sweep_statistics(results, by_patient=False)
    tasks = [t for t in by_patient.counts["task"] if by_patient.has_patients(t)]
    rows = []
    for task in tasks:
        for method in dict.fromkeys(results[results["task"] == task]["method"]):
            for kind in ("bootstrap", "DeLong"):
                images = by_image.interval(task, method, "image_auroc", MEAN, kind)
                patients = by_patient.interval(task, method, "image_auroc", MEAN, kind)
                if images is None or patients is None:
                    continue
                rows.append(
                    {
                        "task": task,
                        "method": method,
                        "interval": kind if kind == "bootstrap" else "DeLong / Obuchowski",
                        "images resampled": f"[{100 * images[0]:.1f}, {100 * images[1]:.1f}]",
                        "patients resampled": f"[{100 * patients[0]:.1f}, {100 * patients[1]:.1f}]",
                        "width ratio": round((patients[1] - patients[0]) / (images[1] - images[0]), 3),
                    }
                )
    keys = ["task", "metric", "method", "against", "test"]
    image_tests = by_image.comparisons[by_image.comparisons["metric"] == "image_auroc"]
    patient_tests = by_patient.comparisons[by_patient.comparisons["metric"] == "image_auroc"]
    verdicts = image_tests[keys + ["p_holm", "significant"]].merge(
        patient_tests[keys + ["p_holm", "significant"]], on=keys, suffixes=(" (images)", " (patients)")
    )
    verdicts = verdicts[verdicts["task"].isin(tasks)].drop(columns=["metric"])
    verdicts["verdict changes"] = verdicts["significant (images)"] != verdicts["significant (patients)"]
    for column in ("p_holm (images)", "p_holm (patients)"):
        verdicts[column] = verdicts[column].map(lambda p: f"{p:.3g}")
    return pd.DataFrame(rows), verdicts.reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from common import publish

    widths, verdicts = compare(args.sweep)
    publish(widths, args.results, "patient_intervals")
    print()
    publish(verdicts, args.results, "patient_verdicts")


if __name__ == "__main__":
    main()
