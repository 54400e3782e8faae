"""The one error type of losskit's input checks, and the way its messages are written."""

from __future__ import annotations

import contextlib

__all__ = ["LossInputError", "fail", "argument_renamed"]


class LossInputError(ValueError):
    """Bad input to a losskit function: the message names the argument, the expected and the given."""


def fail(name: str, expected: str, given: str, hint: str = "") -> LossInputError:
    message = f"{name}: expected {expected}, got {given}"
    if hint:
        message += f"; {hint}"
    return LossInputError(message)


@contextlib.contextmanager
def argument_renamed(**names: str):
    """Within it (or on a function it decorates), a :class:`LossInputError` about an argument of ``names`` names
    the caller's word for it instead: ``argument_renamed(target="label")`` turns ``target: expected ...`` into
    ``label: expected ...`` (the argument an error starts with; the rest of the message is kept)."""
    try:
        yield
    except LossInputError as error:
        name, colon, rest = str(error).partition(": ")
        if not colon or name not in names:
            raise
        raise LossInputError(f"{names[name]}: {rest}") from None
