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
