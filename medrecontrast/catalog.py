"""The built-in methods: each registry name and the module that registers it, readable without importing torch.

``medrecontrast.models`` imports every module listed here (which registers its detector), and the command
line checks method names against this table before it imports anything heavy, so that a misspelled method is
answered as fast as a misspelled flag. A new method is its module plus one entry here.
"""

from __future__ import annotations

import difflib

from medrecontrast.errors import UserInputError

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
        f"anomalib:{name}": "medrecontrast.models.anomalib_bridge"
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
                from medrecontrast.models.anomalib_bridge import refuse_unsupported

                refuse_unsupported(str(name))
            raise UserInputError(unknown_method_message(name, list(METHOD_MODULES)))
