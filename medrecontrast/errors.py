"""Errors that a user can fix: the CLI prints their message alone, without a traceback."""


class UserInputError(Exception):
    """Bad input from the user (missing folder, malformed CSV, broken image, unknown name).

    The message must say which file or name is wrong and what was expected.
    """


class DataLayoutError(UserInputError):
    """A dataset folder does not match the official layout it is supposed to hold."""


class UnreadableImageError(UserInputError):
    """An image file exists but cannot be decoded (truncated, not an image, no pixel data)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def user_error_cause(exc: BaseException) -> UserInputError | None:
    """The :class:`UserInputError` behind ``exc``, if any (MONAI wraps errors of transforms in RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# Bounds no real run reaches (a typo such as iters = 10**30 would sit "running" for ever): refused at planning.
UPPER_BOUNDS = {"iters": 10**8, "epochs": 10**6, "batch_size": 2**16, "checkpoint_every": 10**8}
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding (the released samplers') takes seeds below 2**32


# The range of every float option of any method, by name: (low, high, low included, high included). One table, so a
# method's new option of a known name (a learning rate, a ratio) is checked without a line in its module; every
# float option must in any case be finite (NaN and inf are refused by check_field_types).
INF = float("inf")
FLOAT_RANGES = {
    "lr": (0.0, INF, False, False),
    "lr_decoder": (0.0, INF, False, False),
    "lr_encoder": (0.0, INF, False, False),
    "lr_final": (0.0, INF, True, False),
    "lr_gamma": (0.0, INF, False, False),
    "weight_decay": (0.0, INF, True, False),
    "adam_eps": (0.0, INF, False, False),
    "hard_mining_factor": (0.0, INF, True, False),
    "alpha_warmup": (0.0, 1.0, True, True),
    "hard_fraction": (0.0, 1.0, True, True),
    "bottleneck_dropout": (0.0, 1.0, True, False),
    "coreset_ratio": (0.0, 1.0, False, True),
    "candidate_ratio": (0.0, 1.0, False, True),
    "memory_budget_gb": (0.0, INF, False, False),
    "gpu_memory_budget_gb": (0.0, INF, False, False),
    "sigma": (0.0, INF, True, False),
    "clip_threshold": (0.0, INF, False, False),
    "kl_weight": (0.0, INF, True, False),
    "entropy_weight": (0.0, INF, True, False),
}
TUPLE_RANGES = {"betas": (0.0, 1.0, True, False)}  # each element


def _in_range(value: float, bounds: tuple) -> bool:
    low, high, low_in, high_in = bounds
    return (value > low or (low_in and value == low)) and (value < high or (high_in and value == high))


def _range_text(bounds: tuple) -> str:
    low, high, low_in, high_in = bounds
    if high == INF:
        return "a number >= 0" if low_in and low == 0 else f"a number > {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def check_float_ranges(config) -> None:
    """Every float option of ``config`` is finite and, where :data:`FLOAT_RANGES` names it, in its range (a
    negative or zero learning rate, a coreset ratio of 2: a user error naming the option)."""
    import dataclasses
    import math

    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = list(value) if field.name in TUPLE_RANGES and isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise UserInputError(f"{field.name} must be a finite number, got {value!r}")
        bounds = TUPLE_RANGES.get(field.name) or FLOAT_RANGES.get(field.name)
        if bounds is None or value is None:
            continue
        for item in values:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and not _in_range(float(item), bounds):
                what = "each " if field.name in TUPLE_RANGES else ""
                raise UserInputError(f"{field.name} must be {what}{_range_text(bounds)}, got {value!r}")


def require_positive_ints(config, *names: str) -> None:
    """Each named option of ``config`` is a positive integer, at most its :data:`UPPER_BOUNDS` entry (a
    user error naming it otherwise)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}")
        if value > UPPER_BOUNDS.get(name, value):
            raise UserInputError(f"{name} must be at most {UPPER_BOUNDS[name]:,}, got {value:,}")


def require_seed(seed) -> None:
    """A run's seed is an integer in [0, 2**32 - 1]."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserInputError(f"seed must be an integer from 0 to {MAX_SEED:,}, got {seed!r}")


def require_choice(name: str, value, choices: tuple) -> None:
    """``value`` is one of ``choices`` (a user error naming the option otherwise)."""
    if value not in choices:
        raise UserInputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def require_format(found, expected: int, what: str, where, fix: str = "") -> None:
    """The one check of a stored file's ``format`` number: a user error naming the file and both versions."""
    if found != expected:
        raise UserInputError(
            f"{where} holds {what} of an incompatible version (written by an incompatible medrecontrast version: "
            f"format {found}, "
            f"expected {expected}).{' ' + fix if fix else ''}"
        )


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "None": "null",
    "tuple": "a list of numbers",
}


def check_field_types(config) -> None:
    """Every field of the dataclass ``config`` has a value of its annotated type (``int``, ``float``,
    ``bool``, ``str``, ``None``, unions of them, ``tuple[...]``): ``iters = "10"`` is a user error
    naming ``iters``, not a TypeError deep inside training. An int is a number; a bool is not an int."""
    import dataclasses

    for field in dataclasses.fields(config):
        annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        value = getattr(config, field.name)
        allowed = [part.strip() for part in annotation.split("|")]
        if not any(_is_of(value, kind) for kind in allowed):
            wanted = " or ".join(_TYPE_NAMES.get(kind.split("[")[0], kind) for kind in allowed)
            raise UserInputError(f"{field.name} must be {wanted}, got {value!r}")
    check_float_ranges(config)


def _is_of(value, kind: str) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("tuple"):
        return isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
    return True  # an annotation this check does not know: left to the option's own check
