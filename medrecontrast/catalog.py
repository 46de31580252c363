"""The built-in methods: each registry name and the module that registers it, readable without importing torch.

``medrecontrast.models`` imports every module listed here (which registers its detector), and the command
line checks method names against this table before it imports anything heavy, so that a misspelled method is
answered as fast as a misspelled flag. A new method is its module plus one entry here.
"""

from __future__ import annotations

import difflib

from medrecontrast.errors import UserInputError

ANOMALIB_MODULE = "medrecontrast.models.anomalib_bridge"
METHOD_MODULES = {
    "recontrast": "medrecontrast.models.recontrast",
    "rd4ad": "medrecontrast.models.rd4ad",
    "patchcore": "medrecontrast.models.patchcore",
    "dinomaly": "medrecontrast.models.dinomaly",
    "ae": "medrecontrast.models.ae",
    "vae": "medrecontrast.models.vae",
    "memae": "medrecontrast.models.memae",
    "aeu": "medrecontrast.models.aeu",
    # anomalib's image models that run offline (the anomalib extra); models/anomalib_bridge.py: MODELS
    **{
        f"anomalib:{name}": ANOMALIB_MODULE
        for name in (
            "padim",
            "patchcore",
            "stfpm",
            "fastflow",
            "reverse_distillation",
        )
    },
}


def unknown_method_message(name: str, known: list[str]) -> str:
    """The one message for a method name that is not registered (with a did-you-mean)."""
    close = difflib.get_close_matches(str(name).lower(), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown method '{name}'.{hint} Known methods: {', '.join(known)} (run `medrecontrast methods`)."


def check_method_names(names, variants=()) -> None:
    """Refuse a name that is neither a built-in method nor one of ``variants`` (a sweep file's own names)."""
    for name in names or ():
        if name not in METHOD_MODULES and name not in variants:
            if str(name).startswith("anomalib:"):
                refuse_unsupported(str(name))
            raise UserInputError(unknown_method_message(name, list(METHOD_MODULES)))


# anomalib models that fetch files when they are built or trained; refused when a sweep is planned
NEEDS_DOWNLOAD = {
    "efficient_ad": "EfficientAD's pre-trained PDN teacher (efficientad_pretrained_weights.zip, from GitHub) and "
    "ImageNette for its penalty",
    "draem": "the DTD texture dataset (its anomaly source, downloaded into ./datasets/dtd)",
    "dsr": "DSR's pre-trained VQ model (vq_model_pretrained_128_4096.pckl, from Google Drive)",
    "csflow": "torchvision's EfficientNet-B5 weights (efficientnet_b5_lukemelas-1a07897c.pth)",
    "cfa": "torchvision's ImageNet weights of its backbone (e.g. resnet18-f37072fd.pth)",
    "winclip": "OpenCLIP ViT-B-16-plus-240 weights (from the Hugging Face hub)",
    "dinomaly": "DINOv2 weights (from the Hugging Face hub; the suite's own `dinomaly` method takes a local file)",
    "anomaly_dino": "DINOv2 weights (from the Hugging Face hub)",
    "vlm_ad": "a vision-language model served by an API",
}
# anomalib models the suite does not offer for another reason than a download
NOT_OFFERED = {
    "dfkde": "it gives an image score but no anomaly map, which every method of the suite gives",
    "cflow": "its training stopped on too few feature fibres in a batch at the suite's sizes (anomalib 2.7)",
}


def refuse_unsupported(method: str) -> None:
    """A user error for an ``anomalib:<model>`` name this suite does not run: what the model would download, or the
    models it runs."""
    model = method[len("anomalib:") :]
    runs = ", ".join(name for name, module in METHOD_MODULES.items() if module == ANOMALIB_MODULE)
    if model in NEEDS_DOWNLOAD:
        raise UserInputError(
            f"{method}: anomalib's model needs {NEEDS_DOWNLOAD[model]}, which it downloads when it is built or "
            f"trained; this suite runs the anomalib models that need no download: {runs}"
        )
    if model in NOT_OFFERED:
        raise UserInputError(f"{method} is not offered: {NOT_OFFERED[model]}; the anomalib models it runs: {runs}")
    raise UserInputError(f"unknown method '{method}'; the anomalib models this suite runs: {runs}")
