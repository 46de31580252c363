"""Train and evaluate MedIAnomaly's released reconstruction code, unchanged, on the CPU, on the Brain Tumor benchmark.

    git clone https://github.com/caiyu6666/MedIAnomaly /tmp/mia && git -C /tmp/mia checkout 507201c
    python benchmarks/medianomaly_released.py --code /tmp/mia/reconstruction --data-root ../shared/data memae 0

Runs the released ``train.py`` path (``get_method``, ``set_seed``, ``set_network_loss``, ``set_optimizer``,
``set_dataloader``, ``set_logging``, ``run_train``, ``evaluate``) with ``-d brain -m <model> --train-seed <seed>``,
evaluating at the first and the last epoch only. What it needs that a CPU machine lacks is made a no-op (``.cuda()``,
``torch.cuda.set_device``) or stubbed (wandb, thop, and medpy/SimpleITK, which the recorded path never calls).
The released loader reads ``~/MedIAnomaly-Data/BrainTumor``: ``HOME`` points at a temporary folder whose
``data.json`` leaves out the files the copy lacks (the released loader would stop at the first), beside links to
the images. Prints the released evaluation (AUC, AP) to set beside the suite's runs
(``configs/medianomaly-reconstruction.toml``). Nothing of the released code enters this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path


class _Log:
    def log(self, *args, **kwargs) -> None:
        pass

    def finish(self) -> None:
        pass


def _stub_modules() -> None:
    wandb = types.ModuleType("wandb")
    wandb.init = lambda *args, **kwargs: _Log()
    sys.modules["wandb"] = wandb
    for name in ("thop", "medpy", "medpy.metric", "SimpleITK"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["thop"].profile = lambda *args, **kwargs: (0, 0)
    sys.modules["medpy"].metric = sys.modules["medpy.metric"]


def _home_with_the_present_files(data_root: Path) -> Path:
    release = data_root / "MedIAnomaly-Data" / "BrainTumor"
    home = Path(tempfile.mkdtemp(prefix="medianomaly-home-"))
    target = home / "MedIAnomaly-Data" / "BrainTumor"
    target.mkdir(parents=True)
    (target / "images").symlink_to((release / "images").resolve())
    split = json.loads((release / "data.json").read_text())
    present = set(os.listdir(release / "images"))
    for part in ("train", "test"):
        for key, names in split[part].items():
            if isinstance(names, list):
                split[part][key] = [n for n in names if n in present]
    (target / "data.json").write_text(json.dumps(split))
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["ae", "vae", "memae", "aeu"])
    parser.add_argument("seed", type=int)
    parser.add_argument("--code", type=Path, required=True, help="the released reconstruction/ folder")
    parser.add_argument("--data-root", type=Path, required=True, help="holding MedIAnomaly-Data/BrainTumor")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    _stub_modules()
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.set_device = lambda *a, **k: None
    os.environ["HOME"] = str(_home_with_the_present_files(args.data_root))
    sys.path.insert(0, str(args.code))
    from options import Options
    from train import get_method

    sys.argv = ["train.py", "-d", "brain", "-m", args.model, "--train-seed", str(args.seed)]
    sys.argv += ["--train-eval-freq", "100000", "-f", str(args.seed)]
    opt = Options(isTrain=True)
    opt.parse()
    opt.save_options()
    worker = get_method(opt)
    worker.set_gpu_device()
    worker.set_seed()
    worker.set_network_loss()
    worker.set_optimizer()
    worker.set_dataloader()
    worker.set_logging()
    began = time.time()
    worker.run_train()
    results = {k: float(v) for k, v in worker.evaluate().items()}
    print(json.dumps({"model": args.model, "seed": args.seed, "seconds": round(time.time() - began), **results}))
    shutil.rmtree(os.environ["HOME"], ignore_errors=True)  # the links, the filtered split, the released checkpoint


if __name__ == "__main__":
    main()
