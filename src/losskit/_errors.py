"""The one error type of losskit's input checks, and the way its messages are written."""

from __future__ import annotations

__all__ = ["LossInputError", "fail"]


class LossInputError(ValueError):
    """Bad input to a losskit function: the message names the argument, the expected and the given."""


def fail(name: str, expected: str, given: str, hint: str = "") -> LossInputError:
    message = f"{name}: expected {expected}, got {given}"
    if hint:
        message += f"; {hint}"
    return LossInputError(message)
