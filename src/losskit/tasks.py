"""The four tasks of an output layer, named once.

A task decides the output layer: its units, activation, loss and how a prediction is read (the
README's table). Losses declare the task they serve (``Loss.task``), heads are built per task,
:func:`~losskit.targets.type_of_target` says which task a target needs, and ``losskit eval`` and
``losskit demo`` take ``--task``: all of them speak :class:`Task`.

Design note: ``Task`` is a ``str`` enum, so ``Task.REGRESSION == "regression"``, a task formats
as its plain name and keys a dict as its name does; ``Task.parse`` is the one place the spellings
users type are read ("multi-class", "multi-label", and scikit-learn's "continuous" for regression).
"""

from __future__ import annotations

import enum

from ._errors import fail

__all__ = ["Task"]


class Task(str, enum.Enum):
    """A task: ``BINARY``, ``MULTICLASS``, ``MULTILABEL`` or ``REGRESSION``.

    >>> from losskit import Task
    >>> Task.parse("multi-class"), Task.parse("continuous") == "regression"
    (<Task.MULTICLASS: 'multiclass'>, True)
    >>> f"{Task.BINARY} head"
    'binary head'
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    REGRESSION = "regression"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, value, name: str = "task") -> Task:
        """``value`` (a Task, its name, or an accepted spelling) as a Task; anything else raises
        :class:`~losskit.LossInputError` naming the argument ``name``."""
        if isinstance(value, cls):
            return value
        task = _SPELLINGS.get(value) if isinstance(value, str) else None
        if task is None:
            raise fail(name, f"one of {', '.join(repr(t.value) for t in cls)}", repr(value))
        return task


#: what ``Task.parse`` reads: each task's name, and the other spellings users type
_SPELLINGS = {**{t.value: t for t in Task}, "multi-class": Task.MULTICLASS, "multi-label": Task.MULTILABEL,
              "continuous": Task.REGRESSION}
