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
