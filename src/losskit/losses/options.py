"""One validated record of options per loss family.

A loss holds its options in one frozen record, checked once at construction; ``repr``, the
torch and JAX layers and the kernels read that record, never the loss's ``vars()``, so an
attribute a user sets on a loss object changes nothing, and every entry point checks the same
way. Options are read as attributes of the loss too (``loss.label_smoothing``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .. import _array, _checks

__all__ = ["Options", "BinaryOptions", "CategoricalOptions"]


@dataclass(frozen=True, eq=False)
class Options:
    reduction: str = "mean"
    impl: str = "auto"

    def __post_init__(self):
        self._set("reduction", _checks.reduction(self.reduction))
        self._set("impl", _checks.impl(self.impl))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes) -> Options:
        return type(self)(**{**self.as_dict(), **changes})


def _weights(value: Any, name: str) -> Any:
    if value is not None and not _array.is_array(value):
        _checks.non_negative_number_or_list(value, name)
    return value


@dataclass(frozen=True, eq=False)
class BinaryOptions(Options):
    pos_weight: Any = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._set("pos_weight", _weights(self.pos_weight, "pos_weight"))
        self._set("label_smoothing", _checks.label_smoothing(self.label_smoothing))


@dataclass(frozen=True, eq=False)
class CategoricalOptions(Options):
    axis: int = -1
    class_weight: Any = None
    ignore_index: int | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._set("axis", _checks.integer(self.axis, "axis"))
        self._set("class_weight", _weights(self.class_weight, "class_weight"))
        self._set("ignore_index", _checks.ignore_index(self.ignore_index))
        self._set("label_smoothing", _checks.label_smoothing(self.label_smoothing))
