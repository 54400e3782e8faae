"""PyTorch layers: ``nn.Module`` losses and heads whose backward is losskit's analytic gradient.

Import it explicitly (``import losskit.torch``); ``import losskit`` never imports torch.

Design note: each loss is a ``torch.autograd.Function`` (forward + setup_context, built once
at import) around two ``torch.library`` custom ops, ``losskit::loss_value`` and
``losskit::loss_grad``, that run the core on the tensors. Custom ops are opaque to
``torch.compile``: the core's value checks (which read tensor values) run eagerly inside them,
and ``torch.compile(fullgraph=True)`` traces a model that uses these losses without a graph
break. The Function saves only the input, target and weight, tensors autograd keeps alive
anyway, and recomputes the gradient in backward: no softmax or gradient buffer is held
between forward and backward (PyTorch's ``cross_entropy`` keeps a log-softmax of the logits'
size). The price is a second log-sum-exp pass in backward. Double backward is refused with a
clear error: the backward is the analytic formula, not a graph of differentiable ops; for
second-order information use ``loss.hessian_diag``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch
from array_api_compat import array_namespace
from torch import Tensor, nn

from .. import heads as _heads
from ..losses import REGISTRY

__all__ = [
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "MultilabelCrossEntropy", "MeanSquaredError",
    "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "LossFunction",
]

_SECOND_ORDER = ("losskit.torch: second derivatives through a losskit loss are not supported (its backward "
                 "is the analytic gradient, not a differentiable graph); use loss.hessian_diag for the "
                 "Hessian diagonal")


def _encode_options(options: dict) -> str:
    """Options as a JSON string: custom ops take only simple types. Arrays become lists."""
    plain = {}
    for key, value in options.items():
        if isinstance(value, Tensor):
            value = value.detach().cpu().tolist()
        elif hasattr(value, "tolist"):
            value = value.tolist()
        plain[key] = value
    return json.dumps(plain, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _core_loss(name: str, options: str):
    cls, _ = REGISTRY[name]
    return cls(impl="xp", **json.loads(options))


@torch.library.custom_op("losskit::loss_value", mutates_args=())
def _loss_value(name: str, options: str, input: Tensor, target: Tensor, weight: Tensor | None,
                normalizer: float | None) -> Tensor:
    value = _core_loss(name, options)(input, target, weight=weight, normalizer=normalizer)
    return value.clone() if value is input else value


@_loss_value.register_fake
def _loss_value_fake(name, options, input, target, weight, normalizer):
    loss = _core_loss(name, options)
    if loss.reduction != "none":
        return input.new_empty(())
    return input.new_empty(_batch_shape(loss, input.shape))


@torch.library.custom_op("losskit::loss_grad", mutates_args=())
def _loss_grad(name: str, options: str, input: Tensor, target: Tensor, weight: Tensor | None,
               normalizer: float | None) -> Tensor:
    return _core_loss(name, options).grad(input, target, weight=weight, normalizer=normalizer)


@_loss_grad.register_fake
def _loss_grad_fake(name, options, input, target, weight, normalizer):
    return torch.empty_like(input)


def _refuse_second_order(ctx, grad):
    raise RuntimeError(_SECOND_ORDER)


torch.library.register_autograd("losskit::loss_grad", _refuse_second_order,
                                setup_context=lambda ctx, inputs, output: None)


def _batch_shape(loss, shape) -> tuple:
    axis = loss.example_axis(len(shape))
    return tuple(shape) if axis is None else tuple(s for i, s in enumerate(shape) if i != axis)


class LossFunction(torch.autograd.Function):
    """``LossFunction.apply(name, options, input, target, weight, normalizer)``: a registered core loss
    with losskit's analytic backward. Gradients flow to ``input`` only (not to targets or weights)."""

    @staticmethod
    def forward(name, options, input, target, weight, normalizer):
        return _loss_value(name, options, input, target, weight, normalizer)

    @staticmethod
    def setup_context(ctx, inputs, output):
        name, options, input, target, weight, normalizer = inputs
        ctx.name, ctx.options, ctx.normalizer = name, options, normalizer
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        grad = _loss_grad(ctx.name, ctx.options, input, target, weight, ctx.normalizer)
        if grad_output.ndim:  # reduction="none": one upstream value per example
            axis = _core_loss(ctx.name, ctx.options).example_axis(input.ndim)
            grad_output = grad_output if axis is None else grad_output.unsqueeze(axis)
        return None, None, grad * grad_output, None, None, None


def _apply(name, core, options, input, target, weight, normalizer):
    """The torch-native softmax CE where it applies (see _softmax_ce), else the generic Function."""
    if name == _softmax_ce.NAME and _softmax_ce.applies(core, input, target):
        return _softmax_ce.SoftmaxCEFunction.apply(options, input, target, weight, normalizer)[0]
    return LossFunction.apply(name, options, input, target, weight, normalizer)


def _normalizer(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.item()  # a host number: custom ops take floats
    return float(value)


class _LossModule(nn.Module):
    _name = ""

    def __init__(self, **options: Any):
        super().__init__()
        self.core = REGISTRY[self._name][0](impl="xp", **options)  # validates the options now
        self._options = _encode_options(_loss_options(self.core))

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None,
                normalizer: float | Tensor | None = None) -> Tensor:
        return _apply(self._name, self.core, self._options, input, target, weight, _normalizer(normalizer))

    def extra_repr(self) -> str:
        return self._options


def _module(name: str) -> type:
    core_cls = REGISTRY[name][0]
    doc = (f"``nn.Module`` form of :class:`losskit.{core_cls.__name__}`: same options, same values, "
           f"losskit's analytic backward.\n\n    ``forward(input, target, weight=None, normalizer=None)``; "
           f"shapes and formula as the core class:\n\n    " + (core_cls.__doc__ or ""))
    return type(core_cls.__name__, (_LossModule,), {"_name": name, "__doc__": doc, "__module__": __name__})


BinaryCrossEntropy = _module("binary_cross_entropy")
BinaryCrossEntropyWithLogits = _module("binary_cross_entropy_with_logits")
CategoricalCrossEntropy = _module("categorical_cross_entropy")
SoftmaxCrossEntropy = _module("softmax_cross_entropy")
MultilabelCrossEntropy = _module("multilabel_cross_entropy")
MeanSquaredError = _module("mean_squared_error")


class _HeadModule(nn.Module):
    """A losskit head as an ``nn.Module``: ``forward(logits, target)`` is its loss with the analytic
    backward; ``activation``, ``predict`` and ``predict_proba`` are the core head's."""

    _core_cls: type = _heads.Head

    def __init__(self, *args: Any, **options: Any):
        super().__init__()
        self.head = self._core_cls(*args, **options)
        self._name = _registry_name(self.head.loss_object)
        self._options = _encode_options(_loss_options(self.head.loss_object))

    @property
    def units(self) -> int:
        return self.head.units

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None,
                normalizer: float | Tensor | None = None) -> Tensor:
        # the head's own layout rules ((N, 1) logits for one unit...); reshapes stay differentiable
        logits, target, _ = self.head._align(array_namespace(logits), logits, target)
        return _apply(self._name, self.head.loss_object, self._options, logits, target, weight,
                      _normalizer(normalizer))

    def activation(self, logits: Tensor) -> Tensor:
        return self.head.activation(logits)

    def predict(self, logits: Tensor):
        return self.head.predict(logits)

    def predict_proba(self, logits: Tensor) -> Tensor:
        return self.head.predict_proba(logits)


def _registry_name(loss) -> str:
    for name, (cls, _) in REGISTRY.items():
        if type(loss) is cls:
            return name
    raise TypeError(f"no registered loss for {type(loss).__name__}")


def _loss_options(loss) -> dict:
    """The options a core loss was built with (its public attributes), to rebuild it in the ops."""
    return {k: v for k, v in vars(loss).items() if not k.startswith("_") and k != "impl"}


def _head_module(core_cls: type) -> type:
    doc = (f"``nn.Module`` form of :class:`losskit.{core_cls.__name__}`: ``forward(logits, target)`` "
           f"is the head's loss with losskit's analytic backward.\n\n    " + (core_cls.__doc__ or ""))
    return type(core_cls.__name__, (_HeadModule,), {"_core_cls": core_cls, "__doc__": doc,
                                                     "__module__": __name__})


BinaryHead = _head_module(_heads.BinaryHead)
MulticlassHead = _head_module(_heads.MulticlassHead)
MultilabelHead = _head_module(_heads.MultilabelHead)
RegressionHead = _head_module(_heads.RegressionHead)


from . import _softmax_ce  # noqa: E402 - registers its custom ops; uses the helpers above
