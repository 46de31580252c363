"""A sweep's TOML file read and checked without importing torch, MONAI or the models: the command line answers a
TOML mistake (a syntax error, an unknown top-level key, a value of the wrong type) in a fraction of a second,
where it took ~9 s when torch loaded first. :func:`medrecontrast.bench.load_sweep_config` reads files through it,
so there is one implementation of these checks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from medrecontrast.errors import UserInputError


def check_patient_score(value) -> str:
    """``max``, ``mean`` or ``top<k>`` (k >= 1): how a patient's image scores become the patient's score (the
    statistics' ``patient_score``; here, in this light module, so that a sweep file is checked before torch loads)."""
    if isinstance(value, str) and (
        value in ("max", "mean") or (value[:3] == "top" and value[3:].isdigit() and int(value[3:]) >= 1)
    ):
        return value
    raise UserInputError(f"patient_score must be max, mean or top<k> (e.g. top3), got {value!r}")


def read_sweep_file(path: str | Path) -> tuple[dict, str]:
    """``(the TOML's content, its text)`` after every check that needs no method: the file is UTF-8 TOML, each
    top-level key is a sweep key (:data:`_TYPES`, the fields of ``SweepConfig``) of its type, the sections that
    hold tables hold tables, ``patient_score`` is max, mean or top<k>. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"sweep config {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"cannot read {path}: it is not UTF-8 text (byte {exc.start}); TOML files are UTF-8, save it as UTF-8."
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"cannot parse {path}: {exc}") from None
    known = list(_TYPES)
    for key, value in raw.items():
        if key not in _TYPES:
            raise UserInputError(
                f"{path}, line {_line_of(text, key)}: unknown key '{key}'; known keys: {', '.join(known)}"
            )
        _check_type(path, text, key, value)
        if key == "patient_score":
            try:
                check_patient_score(value)
            except UserInputError as exc:
                raise UserInputError(f"{path}, line {_line_of(text, key)}: {exc}") from None
    for section in ("method", "task", "variant"):
        for name, body in raw.get(section, {}).items():
            if not isinstance(body, dict):
                raise UserInputError(
                    f"{path}, line {_line_of(text, name)}: [{section}.{name}] must be a table of options"
                )
    for task, body in raw.get("task", {}).items():
        for inner in ("method", "data"):
            if inner in body and not isinstance(body[inner], dict):
                raise UserInputError(f"{path}, line {_line_of(text, inner)}: [task.{task}.{inner}] must be a table")
    return raw, text


_TYPES = {
    "tasks": list,
    "methods": list,
    "seeds": list,
    "profile": str,
    "name": str,
    "out": str,
    "report": str,
    "data_root": str,
    "weights": str,
    "executor": str,
    "address": str,
    "gpus_per_run": (int, float),
    "cpus_per_run": int,
    "options": dict,
    "method": dict,
    "task": dict,
    "variant": dict,
    "flags": dict,
    "patient_score": str,
}


def _check_type(path: Path, text: str, key: str, value) -> None:
    expected = _TYPES[key]
    if (
        not isinstance(value, expected)
        or (key == "seeds" and not all(isinstance(s, int) for s in value))
        or (key in ("tasks", "methods") and not all(isinstance(s, str) for s in value))
    ):
        wanted = {"seeds": "a list of integers", "tasks": "a list of names", "methods": "a list of names"}.get(
            key, getattr(expected, "__name__", "a number")
        )
        raise UserInputError(f"{path}, line {_line_of(text, key)}: '{key}' must be {wanted}, got {value!r}")


def _line_of(text: str, key: str, section: str | None = None) -> int | str:
    """Line number where ``key`` is assigned or opens a table (for error messages); with ``section``
    (``task.oct``), the assignment inside that table if the file has one there."""
    pattern = re.compile(rf'^\s*(\[[^\]]*)?["\']?{re.escape(key)}["\']?\s*(=|\]|\.)')
    lines = text.splitlines()
    if section is not None:
        header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]")
        inside = False
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("["):
                inside = bool(header.match(line))
            elif inside and pattern.search(line):
                return number
    for number, line in enumerate(lines, start=1):
        if pattern.search(line):
            return number
    return "?"
