"""The option records of the losses beyond cross-entropy and squared error (issue 8).

Each record validates its hyper-parameters once, at construction, and a bad one raises a
:class:`~losskit.LossInputError` that names it (``gamma: expected a number >= 0, got -1``).
They extend the records of :mod:`losskit.losses.options`, which stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _checks
from .declaration import number
from .options import CategoricalOptions, Options, _weights

__all__ = ["number", "SigmoidFocalOptions", "SoftmaxFocalOptions", "PolyOptions", "LabelOptions",
           "DistillationOptions", "DeltaOptions", "BetaOptions", "QuantileOptions", "TweedieOptions"]


def _alpha_binary(value: Any) -> float | None:
    return None if value is None else number(value, "alpha", low=0.0, high=1.0)


@dataclass(frozen=True, eq=False)
class SigmoidFocalOptions(Options):
    gamma: float = 2.0
    alpha: float | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._set("gamma", number(self.gamma, "gamma", low=0.0))
        self._set("alpha", _alpha_binary(self.alpha))
        self._set("label_smoothing", _checks.label_smoothing(self.label_smoothing))


@dataclass(frozen=True, eq=False)
class SoftmaxFocalOptions(CategoricalOptions):
    gamma: float = 2.0
    alpha: Any = None  # None, a number >= 0, or one per class

    def __post_init__(self):
        super().__post_init__()
        self._set("gamma", number(self.gamma, "gamma", low=0.0))
        if _checks.is_number(self.alpha):
            self._set("alpha", number(self.alpha, "alpha", low=0.0))
        else:
            self._set("alpha", _weights(self.alpha, "alpha"))


@dataclass(frozen=True, eq=False)
class PolyOptions(CategoricalOptions):
    epsilon: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._set("epsilon", number(self.epsilon, "epsilon"))


@dataclass(frozen=True, eq=False)
class LabelOptions(Options):
    """Integer class labels only (no smoothing: a margin loss has no target distribution)."""

    axis: int = -1
    class_weight: Any = None
    ignore_index: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self._set("axis", _checks.integer(self.axis, "axis"))
        self._set("class_weight", _weights(self.class_weight, "class_weight"))
        self._set("ignore_index", _checks.ignore_index(self.ignore_index))


@dataclass(frozen=True, eq=False)
class DistillationOptions(Options):
    temperature: float = 1.0
    axis: int = -1

    def __post_init__(self):
        super().__post_init__()
        self._set("temperature", number(self.temperature, "temperature", low=0.0, low_open=True))
        self._set("axis", _checks.integer(self.axis, "axis"))


@dataclass(frozen=True, eq=False)
class DeltaOptions(Options):
    delta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._set("delta", number(self.delta, "delta", low=0.0, low_open=True))


@dataclass(frozen=True, eq=False)
class BetaOptions(Options):
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._set("beta", number(self.beta, "beta", low=0.0))


@dataclass(frozen=True, eq=False)
class QuantileOptions(Options):
    quantiles: Any = (0.5,)

    def __post_init__(self):
        super().__post_init__()
        value = self.quantiles
        if _checks.is_number(value):
            value = (value,)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise _checks.fail("quantiles", "a number in (0, 1) or a list of them", repr(self.quantiles))
        values = tuple(number(q, "quantiles", low=0.0, high=1.0, low_open=True, high_open=True)
                       for q in (value.tolist() if hasattr(value, "tolist") else value))
        if not values:
            raise _checks.fail("quantiles", "at least one quantile in (0, 1)", "an empty list")
        self._set("quantiles", values)


@dataclass(frozen=True, eq=False)
class TweedieOptions(Options):
    power: float = 1.5

    def __post_init__(self):
        super().__post_init__()
        power = number(self.power, "power")
        if 0.0 < power < 1.0:
            raise _checks.fail("power", "a number <= 0 or >= 1 (no Tweedie distribution has a power "
                               "in (0, 1))", repr(self.power))
        self._set("power", power)
