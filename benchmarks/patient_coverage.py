"""Coverage of 95 % intervals of image AUROC when patients contribute several correlated images.

A simulation where the truth is known: each patient has a random effect u ~ N(0, rho) shared by its images,
each image its own noise e ~ N(0, 1 - rho) (so rho is the within-patient correlation of scores), abnormal
patients are shifted by delta. Normal and abnormal images come from different patients, so the population image
AUROC is P(abnormal image > normal image) = Phi(delta / sqrt(2)) whatever rho is. For each simulated test set the
script computes the four intervals the suite can give (image bootstrap, patient bootstrap, DeLong, Obuchowski's
clustered DeLong) and counts how often each covers the truth; the patient-level methods should cover ~95 %, the
image-level ones less, the more so the more images per patient and the higher rho.

    python benchmarks/patient_coverage.py                      # the table in benchmarks/README.md
    python benchmarks/patient_coverage.py --trials 100 --resamples 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))

from medrecontrast import stats  # noqa: E402

TRUE_AUROC = 0.75


def simulate(rng, patients: int, images: int, rho: float, auroc: float = TRUE_AUROC):
    """``labels, scores, patients`` of one test set: ``patients`` normal and as many abnormal patients, ``images``
    each, scores with within-patient correlation ``rho`` and population image AUROC ``auroc``."""
    delta = np.sqrt(2) * sps.norm.ppf(auroc)
    labels = np.repeat(np.r_[np.zeros(patients, int), np.ones(patients, int)], images)
    who = np.repeat(np.arange(2 * patients), images)
    shared = rng.normal(0, np.sqrt(rho), 2 * patients)[who]
    scores = delta * labels + shared + rng.normal(0, np.sqrt(1 - rho), len(labels))
    return labels, scores, who.astype(str)


def coverage(patients: int, images: int, rho: float, trials: int, resamples: int, seed: int = 0) -> dict:
    """How often each interval covers the true AUROC over ``trials`` simulated test sets."""
    rng = np.random.default_rng(seed)
    covered = dict(image_bootstrap=0, patient_bootstrap=0, delong=0, obuchowski=0)
    widths = {k: [] for k in covered}
    for trial in range(trials):
        labels, scores, who = simulate(rng, patients, images, rho)
        intervals = {
            "image_bootstrap": stats.percentile_interval(
                stats.curve_metrics(labels, scores, stats.bootstrap_counts(labels, resamples, trial))["image_auroc"]
            ),
            "patient_bootstrap": stats.percentile_interval(
                stats.curve_metrics(labels, scores, stats.cluster_bootstrap(labels, who, resamples, trial)[0])[
                    "image_auroc"
                ]
            ),
            "delong": stats.delong_interval(labels, scores)[1:],
            "obuchowski": stats.delong_interval(labels, scores, clusters=who)[1:],
        }
        for name, (low, high) in intervals.items():
            covered[name] += low <= TRUE_AUROC <= high
            widths[name].append(high - low)
    return {
        "patients per class": patients,
        "images per patient": images,
        "within-patient correlation": rho,
        **{f"{k} coverage": covered[k] / trials for k in covered},
        **{f"{k} width": float(np.mean(widths[k])) for k in covered},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows = [
        coverage(patients, images, rho, args.trials, args.resamples)
        for patients, images, rho in ((100, 1, 0.0), (40, 5, 0.3), (40, 5, 0.6), (30, 10, 0.6))
    ]
    table = pd.DataFrame(rows)
    pct = [c for c in table.columns if c.endswith("coverage")]
    table[pct] = (table[pct] * 100).round(1)
    table[[c for c in table.columns if c.endswith("width")]] = table[
        [c for c in table.columns if c.endswith("width")]
    ].round(3)
    from common import publish

    publish(table, args.results, "patient_coverage")
    print(
        f"\n{args.trials} trials x {args.resamples} resamples per row, true AUROC {TRUE_AUROC}; "
        f"{time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
