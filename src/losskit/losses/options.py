"""One validated record of options per loss family, all here, by subject: the reduction; class-label
targets; binary targets; the focal, poly, distillation, quantile and Tweedie parameters. (A loss
written as a formula declares its own numeric options on its class instead: ``lk.option``.)

A loss holds its options in one frozen record, checked once at construction; ``repr``, the
torch and JAX layers and the kernels read that record, and every entry point checks the same
way. Options are read as attributes of the loss too (``loss.label_smoothing``); setting one is
refused (``loss.replace(label_smoothing=0.1)`` makes a loss with another value).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .. import _array, _checks
from .declaration import number

__all__ = ["Options", "LabelOptions", "CategoricalOptions", "BinaryOptions", "SigmoidFocalOptions",
           "SoftmaxFocalOptions", "PolyOptions", "DistillationOptions", "JSDOptions", "QuantileOptions",
           "TweedieOptions"]


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
class LabelOptions(Options):
    """Integer class labels: the class axis, class weights, an ignored label."""

    axis: int = -1
    class_weight: Any = None
    ignore_index: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self._set("axis", _checks.integer(self.axis, "axis"))
        self._set("class_weight", _weights(self.class_weight, "class_weight"))
        self._set("ignore_index", _checks.ignore_index(self.ignore_index))


@dataclass(frozen=True, eq=False)
class CategoricalOptions(LabelOptions):
    """Class labels or probabilities: label smoothing too."""

    label_smoothing: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._set("label_smoothing", _checks.label_smoothing(self.label_smoothing))


@dataclass(frozen=True, eq=False)
class BinaryOptions(Options):
    pos_weight: Any = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self._set("pos_weight", _weights(self.pos_weight, "pos_weight"))
        self._set("label_smoothing", _checks.label_smoothing(self.label_smoothing))


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
class DistillationOptions(Options):
    temperature: float = 1.0
    axis: int = -1

    def __post_init__(self):
        super().__post_init__()
        self._set("temperature", number(self.temperature, "temperature", low=0.0, low_open=True))
        self._set("axis", _checks.integer(self.axis, "axis"))


@dataclass(frozen=True, eq=False)
class JSDOptions(DistillationOptions):
    """The generalised JSD: the distillation's temperature and axis, and the mixture's ``beta``."""

    beta: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        self._set("beta", number(self.beta, "beta", low=0.0, high=1.0))


@dataclass(frozen=True, eq=False)
class QuantileOptions(Options):
    quantiles: Any = (0.5,)

    def __post_init__(self):
        super().__post_init__()
        value = self.quantiles
        if getattr(value, "ndim", None) == 0:  # a 0-d array is one number
            value = value.item() if hasattr(value, "item") else value
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
