"""Every method of the default demo finds the anomalies of every built-in task with the demo profile.

The demo profile is what the README's first command runs: EfficientNet-Lite0 with the ImageNet weights that
install with the package, 128 px, the demo's short schedules (ReContrast and RD4AD 40 iterations of batch 8,
PatchCore a 10 % coreset). Each case trains exactly that schedule, seed 0, on every training normal of the task,
and must
clear FLOOR (chance is 0.5); the measured figures of the whole demo sweep are in reports/demo/.
"""

import pytest
from sklearn.metrics import roc_auc_score

from medrecontrast import build_detector
from medrecontrast.data.dataset import task_datasets
from medrecontrast.run import run_config
from medrecontrast.tasks import get_task

FLOOR = 0.8
CASES = [
    (task, method)
    for task in ("synth-fundus", "synth-oct", "synth-skin")
    for method in ("recontrast", "rd4ad", "patchcore")
]


@pytest.mark.slow
@pytest.mark.parametrize("task_name,method", CASES)
def test_the_demo_profile_finds_the_anomalies(task_name, method):
    task = get_task(task_name)
    config = run_config(task, method, seed=0)
    assert config["profile"] == "demo" and config["detector"]["pretrained"] is True  # the default, with weights
    train, test = task_datasets(task.load(), image_size=config["image_size"])
    predictions = build_detector(method, **config["detector"]).fit(train, progress=False).predict(test)
    auroc = roc_auc_score(predictions.labels, predictions.scores)
    print(f"{task_name} {method} image AUROC {auroc:.3f}")
    assert auroc > FLOOR
