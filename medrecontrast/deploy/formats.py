"""Exported detectors: write a scoring module as ONNX or TorchScript with its metadata, and run such a file.

What an exported file is (one contract for both formats):

* inputs: ``images``, float32 ``(batch, 3, S, S)`` pixels in [0, 1] — the image as the suite's readers give it
  (decoded, DICOM/NIfTI intensity rules applied, grey repeated to 3 channels), resized to the run's
  ``image_size`` square (anti-aliased bilinear) and centre-cropped to ``crop_size``; ``S`` is the network's input
  side, recorded in the metadata. A VAE also takes ``eps``, float32 ``(batch, latent_size)``: the standard-normal
  draws its score takes (the metadata's ``noise`` says how the suite draws them).
* outputs: ``scores`` ``(batch,)`` and ``maps`` ``(batch, S, S)``, both float32: the method's resizing,
  normalisation, map fusion, blur and score reduction are inside the graph.
* batch size: dynamic; the side ``S`` is fixed (the network's positional sizes depend on it).
* metadata (ONNX ``metadata_props["medrecontrast"]``, TorchScript extra file ``medrecontrast.json``): JSON of the
  method, sizes, the run's label-free threshold, the parity measured at export and the versions.

ONNX: opset :data:`OPSET`, written by torch's ``torch.export``-based exporter (the default since torch 2.9; the
TorchScript-based one is deprecated), one file (no external data). TorchScript: ``torch.jit.trace``; torch marks
TorchScript deprecated, so ONNX is the format to deploy.

This module imports no training code: :class:`ExportedModel` needs onnxruntime (ONNX) or torch (TorchScript) only.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from medrecontrast.errors import UserInputError

EXPORT_FORMAT = 1  # of the metadata; a reader refuses a newer one
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # format -> the default file suffix
# opset 18: the torch.export-based exporter's own opset (its translations target it; asking for another makes it
# convert the graph afterwards), supported by onnxruntime >= 1.14
OPSET = 18
METADATA_KEY = "medrecontrast"
TORCHSCRIPT_EXTRA = "medrecontrast.json"
EXPORT_INSTALL = "pip install 'medrecontrast[export]'"


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise UserInputError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


def write_exported(module, inputs: dict, path: str | os.PathLike, format: str, metadata: dict) -> Path:
    """Write ``module`` (``forward(*inputs) -> (scores, maps)``, traced with the example ``inputs``, name ->
    tensor, batch first and at least 2) as ``format`` to ``path`` with ``metadata``, atomically."""
    import torch

    from medrecontrast.paths import atomic_path

    check_format(format)
    path = Path(path)
    metadata = {"export_format": EXPORT_FORMAT, **metadata, "inputs": {k: list(v.shape[1:]) for k, v in inputs.items()}}
    module = module.eval()
    examples = tuple(inputs.values())
    with atomic_path(path) as partial, torch.no_grad():
        if format == "onnx":
            _write_onnx(module, inputs, examples, partial, metadata)
        else:
            import warnings

            with warnings.catch_warnings():
                # torch.jit.trace/save announce their deprecation (docs/export.md says so once), and the trace warns
                # that a Python condition on a tensor (the size-multiple check) is fixed: the side is fixed
                warnings.filterwarnings("ignore", message=r".*deprecated.*")
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                traced = torch.jit.trace(module, examples, check_trace=False)
                torch.jit.save(
                    traced, str(partial), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata, default=str)}
                )
    return path


def _write_onnx(module, inputs: dict, examples: tuple, partial: Path, metadata: dict) -> None:
    import contextlib
    import io
    import warnings

    import torch

    try:
        import onnx
    except ImportError:
        raise UserInputError(f"ONNX export needs onnx, onnxscript and onnxruntime: {EXPORT_INSTALL}") from None
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter's progress lines
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=["scores", "maps"],
            dynamic_shapes=tuple({0: batch} for _ in inputs),
            external_data=False,
            verbose=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, default=str)})
    onnx.save_model(model, str(partial))


def detect_format(path: str | os.PathLike) -> str:
    """``onnx`` or ``torchscript`` by the file's content; refused (with what it is) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path} does not exist.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith(f"extra/{TORCHSCRIPT_EXTRA}") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names) and not any("/code/" in n for n in names):
            raise UserInputError(
                f"{path} is a PyTorch checkpoint (a run's saved model?), not an exported file: score with "
                "`predict --run RUN_FOLDER`, or export the run first (`medrecontrast export --run RUN_FOLDER`)."
            )
        raise UserInputError(f"{path} is a TorchScript archive without medrecontrast's metadata: not exported by it.")
    return "onnx"  # a protobuf has no signature to check: onnxruntime's parser says whether it is one


class ExportedModel:
    """An exported detector file, run with onnxruntime (ONNX) or torch.jit (TorchScript) only.

    ``metadata`` is what export recorded; calling it with ``images`` (``(B, 3, S, S)`` float32 in [0, 1]) and, for a
    VAE, ``eps`` gives numpy ``(scores (B,), maps (B, S, S))``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.format = detect_format(self.path)
        if self.format == "onnx":
            try:
                import onnxruntime
            except ImportError:
                raise UserInputError(f"running an ONNX file needs onnxruntime: {EXPORT_INSTALL}") from None
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            try:
                self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf classes
                raise UserInputError(
                    f"{self.path} is neither an ONNX file nor a TorchScript file exported by medrecontrast ({exc})"
                ) from None
            props = self.session.get_modelmeta().custom_metadata_map
            if METADATA_KEY not in props:
                raise UserInputError(
                    f"{self.path} is an ONNX file without medrecontrast's metadata: not exported by it."
                )
            self.metadata = json.loads(props[METADATA_KEY])
        else:
            import torch

            extra = {TORCHSCRIPT_EXTRA: ""}
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*deprecated.*")
                self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
            self.metadata = json.loads(extra[TORCHSCRIPT_EXTRA])
        if int(self.metadata.get("export_format", 0)) > EXPORT_FORMAT:
            raise UserInputError(f"{self.path} was exported by a newer medrecontrast; upgrade it to read the file.")
        self.input_names = list(self.metadata["inputs"])
        self.side = int(self.metadata["input_side"])

    @property
    def noise(self) -> dict | None:
        """How the file's random draws are made (a VAE), or None."""
        return self.metadata.get("noise")

    def __call__(self, images: np.ndarray, eps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = (3, self.side, self.side)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise UserInputError(
                f"{self.path.name} takes images of shape (batch, {', '.join(map(str, expected))}), got {images.shape}"
            )
        feeds = {"images": images}
        if "eps" in self.input_names:
            if eps is None:
                raise UserInputError(f"{self.path.name} ({self.metadata['method']}) needs its random draws eps")
            feeds["eps"] = np.ascontiguousarray(eps, dtype=np.float32)
        if self.format == "onnx":
            scores, maps = self.session.run(["scores", "maps"], feeds)
            return scores, maps
        import torch

        with torch.no_grad():
            scores, maps = self.module(*(torch.from_numpy(feeds[name]) for name in self.input_names))
        return scores.numpy(), maps.numpy()
