"""Record ``medianomaly_released.json`` (tests/test_reconstruction_methods.py) from the released code.

    git clone https://github.com/caiyu6666/MedIAnomaly /tmp/mia && git -C /tmp/mia checkout 507201c
    python tests/golden/record_medianomaly.py tests/golden/medianomaly_released.json /tmp/mia/reconstruction

Record golden numbers from the released MedIAnomaly reconstruction code (caiyu6666/MedIAnomaly @ 507201c),
run unchanged on the CPU (Tensor.cuda / Module.cuda made no-ops; wandb, thop, medpy, SimpleITK stubbed: the
workers import them but the recorded paths never call them)."""

import json
import sys
import types
import zlib

import numpy as np
import torch

for name in ["wandb", "thop", "medpy", "medpy.metric", "SimpleITK"]:
    mod = types.ModuleType(name)
    sys.modules[name] = mod
sys.modules["medpy"].metric = sys.modules["medpy.metric"]
sys.modules["thop"].profile = lambda *a, **k: (0, 0)
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else "/tmp/mia/reconstruction")
from options import Options  # noqa
from train import get_method  # noqa


def golden_value(name, shape):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float64)
    if ".weight" in name and len(shape) == 1:  # BatchNorm weights
        return (1 + 0.1 * x).float()
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (1.0 * x / fan_in**0.5).float()  # Kaiming-like, so that the reconstruction is far from zero


def summary(t):
    t = t.detach().double()
    return {"norm": t.norm().item(), "sum": t.sum().item(), "first": t.flatten()[:4].tolist()}


def pixels():
    # grey pixels in [0, 1], as the suite's pipeline gives them (one channel; the suite repeats it to RGB)
    return torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))


out = {"size": 64, "labels": [0, 0, 1, 1]}
for method in ["ae", "vae", "memae", "aeu"]:
    opt = Options(isTrain=True)
    opt.dataset = "brain"
    opt.model = {
        "name": method,
        "in_c": 1,
        "input_size": 64,
        "base_width": 16,
        "expansion": 1,
        "hidden_num": 1024,
        "ls": 16,
        "en_depth": 1,
        "de_depth": 1,
    }
    opt.train = {"lr": 1e-3, "weight_decay": 0, "batch_size": 4, "epochs": 1, "eval_freq": 25, "seed": 0}
    opt.test = {"save_flag": False}
    worker = get_method(opt)
    worker.set_network_loss()
    net = worker.net
    params = {n: golden_value(n, p.shape) for n, p in net.named_parameters()}
    missing, unexpected = net.load_state_dict(params, strict=False)
    assert not unexpected and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in missing)
    net.double()  # float64 on both sides: float32's summation order (thread count) moved gradients by ~2e-5
    worker.set_optimizer()
    x = (pixels() * 2 - 1).double()  # ToTensor + Normalize((0.5,), (0.5,))
    captured = {}
    hook = net.register_forward_hook(lambda m, i, o: captured.setdefault("train", o))
    worker.train_loader = [{"img": x}]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    torch.manual_seed(123)  # the VAE's sample in training
    losses = worker.train_epoch()
    hook.remove()
    loss = losses[0] if isinstance(losses, tuple) else losses
    rec = {
        "train_x_hat": summary(captured["train"]["x_hat"]),
        "loss": loss,
        "grads": {n: summary(p.grad) for n, p in net.named_parameters() if p.grad is not None},
        "step_delta": {n: summary(p.detach() - before[n]) for n, p in net.named_parameters()},
        "buffers": {n: summary(b) for n, b in net.named_buffers() if b.dtype.is_floating_point},
    }
    # the released evaluation: batch 1, eval mode; the score maps the criterion gives, their means
    maps = []
    forward = worker.criterion.forward

    def capture(*a, **k):
        r = forward(*a, **k)
        if k.get("anomaly_score"):
            maps.append(r.detach().clone())
        return r

    worker.criterion.forward = capture
    worker.test_loader = [
        {"img": x[i : i + 1], "label": torch.tensor([label]), "name": [f"i{i}"]}
        for i, label in enumerate(out["labels"])
    ]
    torch.manual_seed(321)  # the VAE's samples in evaluation
    results = worker.evaluate()
    maps = torch.cat(maps)
    rec.update(
        {
            "maps": [summary(m) for m in maps],
            "scores": maps.mean(dim=[1, 2, 3]).tolist(),
            "normal_score": float(results["normal_score"]),
            "abnormal_score": float(results["abnormal_score"]),
            "auc": float(results["AUC"]),
        }
    )
    out[method] = rec
    print(method, "loss", loss, "scores", rec["scores"], "x_hat", rec["train_x_hat"]["norm"], "x", x.norm().item())
json.dump(out, open(sys.argv[1], "w"), indent=None)
