"""PyTorch layers: ``nn.Module`` losses and heads whose backward is losskit's analytic gradient.

Import it explicitly (``import losskit.torch``); ``import losskit`` never imports torch.

Design note: a loss is one ``torch.library`` custom op, ``losskit::value_and_grad``, that resolves
the call into the core's plan and returns the value and the gradient from one sweep: on CPU
tensors the compiled kernels, through zero-copy views of the tensors' memory; on other devices
(CUDA) the torch-native kernels of :mod:`losskit.torch._native`; the core's array-API path only
for rows that hold +-inf (exact limits). Its registered autograd saves that gradient (one buffer
of the input's size) and backward scales it by the upstream gradient: no second pass. It keeps the
input too, for a second backward over a retained graph or a double backward: no memory of its own
while the caller holds the logits, one buffer more while only the graph does (docs/frameworks.md).
When the input does not require grad only the value is
computed (``losskit::loss_value``). An eager call on plain CPU tensors skips the op's dispatch: the
same forward and backward as an ``autograd.Function``, the core on NumPy views of the tensors
(:class:`_EagerValueAndGrad`, :func:`_numpy_views`). Custom ops are opaque to ``torch.compile``: the core's value
checks run eagerly inside them, and ``torch.compile(fullgraph=True)`` traces a model that uses
these losses without a graph break.

Second order: double backward works (``create_graph=True``: gradient penalties, Hessian-vector
products). The backward of the gradient output is a third custom op, ``losskit::loss_hvp``, with
the analytic Hessian-vector product: ``hessian_diag * v`` for the losses whose Hessian is diagonal
(every element's loss depends on that element alone), and ``c_i t_i (p * v - p <p, v>)`` per
example for softmax cross-entropy. Third and higher derivatives raise a RuntimeError that says so.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import numpy as np
import torch
from array_api_compat import array_namespace
from torch import Tensor, nn

from .. import _array, _checks
from .. import heads as _heads
from ..activations import softmax_xp
from ..losses import REGISTRY, catalogue
from ..losses.base import require_loss_object
from ..losses.registry import name_of, unregistered
from . import _arguments, _native

_THIRD_ORDER = ("losskit.torch: third and higher derivatives through a losskit loss are not supported "
                "(first and second are: the backward of the gradient is the analytic Hessian-vector "
                "product); for the Hessian diagonal use loss.hessian_diag")


def _encode_options(options: dict) -> str:
    """Options as a JSON string: custom ops take only simple types. Arrays become lists."""
    plain = {}
    for key, value in options.items():
        if isinstance(value, Tensor):
            # read once, as numbers: it would get no gradient (F.cross_entropy refuses one too, and takes it
            # under no_grad)
            _arguments.no_grad("detach it: an option is read as numbers at construction", **{key: value})
            if value.device.type == "meta":  # no values to read: torch's own words name no option
                raise _checks.fail(key, "a tensor holding its values: an option is read as numbers at construction",
                                   "a tensor on the meta device")
            value = value.detach().cpu().tolist()
        elif hasattr(value, "tolist"):
            value = value.tolist()
        plain[key] = value
    return json.dumps(plain, sort_keys=True)


def _core_loss(name: str, options: str):
    """The core loss an op's name and options stand for: the class registered under the name now (a user's
    loss redefined under its name, a notebook cell run twice, runs its new formula)."""
    return _instance(REGISTRY[name][0], options)


@functools.lru_cache(maxsize=256)
def _instance(cls: type, options: str):
    return cls(**json.loads(options))


def _value_and_grad(loss, input, target, weight, normalizer, with_grad: bool):
    """The core's plan, then the compiled kernels (CPU), the torch-native kernels (other devices)
    or the reference path (rows with +-inf)."""
    order = 1 if with_grad else 0
    views = _numpy_views(input, target, weight)
    if views is not None:
        input_view, target_view, weight_view = views
        plan = loss.plan(input_view, target_view, weight=weight_view, normalizer=normalizer)
        return _from_numpy(loss.compute(plan, order), input_view)
    # detached: the op computes the gradient itself, and a tensor in a graph has no DLPack view
    plan = loss.plan(input.detach(), target, weight=weight, normalizer=normalizer)
    if input.device.type != "cpu":
        native = _native.value_and_grad(loss, plan, with_grad)
        if native is not None:
            return native
        return loss.reference(plan, order)
    return loss.compute(plan, order)


#: the input dtypes whose CPU calls the core runs on NumPy views (half precision stays on torch: NumPy has
#: no bfloat16)
_NUMPY_DTYPES = (torch.float32, torch.float64)
#: the tensor types whose memory NumPy views
_PLAIN = (Tensor, nn.Parameter)


def _numpy_views(input, target, weight):
    """``(input, target, weight)`` as NumPy views of the same memory, when every tensor is a plain CPU
    tensor NumPy can view and the input is float32/float64; else None.

    Why: the core's plan, checks and kernel calls on torch tensors go through torch's dispatcher one
    small op at a time (5-10 us each, about 30 of them), and a small call spent 3-4x the NumPy call's
    time there; the kernels read NumPy views of the memory either way. The values, the checks and
    their messages are the same on both."""
    tensors = (input, target) if weight is None else (input, target, weight)
    # a Parameter is a plain tensor's memory too; other subclasses (fake, functorch-wrapped) have none
    if input.dtype not in _NUMPY_DTYPES or any(type(t) not in _PLAIN or t.device.type != "cpu" for t in tensors):
        return None
    try:
        return tuple(None if t is None else t.detach().numpy() for t in (input, target, weight))
    except (TypeError, RuntimeError):  # a dtype NumPy lacks (bfloat16 target...), a negative-bit view
        return None


def _from_numpy(result, input):
    """The core's NumPy ``(value, derivative)`` as tensors; a result that views the input (or NumPy
    marks read-only) is copied, as a custom op may not return an alias of its input."""
    def tensor(array):
        if array is None:
            return None
        array = np.asarray(array)
        if not array.flags.writeable or np.may_share_memory(array, input):
            array = array.copy()
        return torch.from_numpy(array)

    return tuple(tensor(part) for part in result)


def _value_only(name, options, input, target, weight, normalizer):
    """The loss value alone, never the input itself (an op may not return an alias of its input)."""
    value = _value_and_grad(_core_loss(name, options), input, target, weight, normalizer, False)[0]
    return value.clone() if value is input else value


@torch.library.custom_op("losskit::loss_value", mutates_args=())
def _loss_value(name: str, options: str, input: Tensor, target: Tensor, weight: Tensor | None,
                normalizer: float | None) -> Tensor:
    return _value_only(name, options, input, target, weight, normalizer)


@_loss_value.register_fake
def _loss_value_fake(name, options, input, target, weight, normalizer):
    loss = _core_loss(name, options)
    if loss.reduction != "none":
        return input.new_empty(())
    return input.new_empty(_batch_shape(loss, input.shape))


@torch.library.custom_op("losskit::value_and_grad", mutates_args=())
def _loss_value_and_grad(name: str, options: str, input: Tensor, target: Tensor, weight: Tensor | None,
                         normalizer: float | None) -> tuple[Tensor, Tensor]:
    value, grad = _value_and_grad(_core_loss(name, options), input, target, weight, normalizer, True)
    # the fake's strides (empty_like), which a compiled graph checks but for size-1 axes: a class axis other
    # than the last restores to a view; a sliced input's empty_like is contiguous, as the kernel's gradient
    expected = torch.empty_like(input, device="meta").stride()
    if any(n > 1 and have != want for n, have, want in zip(grad.shape, grad.stride(), expected, strict=True)):
        grad = torch.empty_like(input).copy_(grad)
    return value, grad


@_loss_value_and_grad.register_fake
def _loss_value_and_grad_fake(name, options, input, target, weight, normalizer):
    return _loss_value_fake(name, options, input, target, weight, normalizer), torch.empty_like(input)


def _setup(ctx, inputs, output):
    name, options, input, target, weight, normalizer = inputs
    ctx.name, ctx.options, ctx.normalizer = name, options, normalizer
    ctx.save_for_backward(input, target, weight)
    # kept detached, not saved: a saved output would hold the node in a cycle and share the buffer
    # with autograd, and this one is handed over, scaled in place, to the input's .grad
    ctx.grad = output[1].detach()
    ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not as zeros


def _take_grad(ctx, input, target, weight):
    """The forward's gradient, handed over once. A second backward over a retained graph, or a
    double backward (which needs a gradient connected to the graph), computes it again."""
    grad, ctx.grad = ctx.grad, None
    if grad is None or torch.is_grad_enabled():
        return _loss_value_and_grad(ctx.name, ctx.options, input, target, weight, ctx.normalizer)[1], False
    return grad, True


def _backward(ctx, upstream, upstream_of_grad):
    """``d/d input`` of ``<upstream, value> + <upstream_of_grad, grad>``: the forward's gradient times
    the upstream value, plus the Hessian-vector product when a double backward asks for it."""
    input, target, weight = ctx.saved_tensors
    result = None
    if upstream is not None:
        grad, owned = _take_grad(ctx, input, target, weight)
        if upstream.ndim:  # reduction="none": one upstream value per example
            axis = _core_loss(ctx.name, ctx.options).example_axis(input.ndim)
            upstream = upstream if axis is None else upstream.unsqueeze(axis)
        # reading the upstream value is for eager CPU tensors only: a traced backward (torch.compile)
        # holds fake or functional tensor subclasses, whose value is data-dependent
        # a batched upstream (is_grads_batched, jacobian(vectorize=True)) has no .item() and no in-place product
        batched = _arguments.batched(upstream)
        eager_one = (type(upstream) is torch.Tensor and not torch.compiler.is_compiling() and not upstream.ndim
                     and not upstream.requires_grad and upstream.device.type == "cpu" and not batched
                     and upstream.item() == 1)
        if not owned or batched:
            result = grad * upstream
        elif eager_one:
            result = grad  # loss.backward(): the upstream is exactly 1
        else:
            result = grad.mul_(upstream)  # nobody else holds this buffer: scale it in place
    if upstream_of_grad is not None:
        hvp = _loss_hvp(ctx.name, ctx.options, input, target, weight, ctx.normalizer, upstream_of_grad)
        result = hvp if result is None else result + hvp
    return None, None, result, None, None, None


torch.library.register_autograd("losskit::value_and_grad", _backward, setup_context=_setup)


@torch.library.custom_op("losskit::loss_hvp", mutates_args=())
def _loss_hvp(name: str, options: str, input: Tensor, target: Tensor, weight: Tensor | None,
              normalizer: float | None, vector: Tensor) -> Tensor:
    return _hessian_vector_product(_core_loss(name, options), name, input, target, weight, normalizer, vector)


@_loss_hvp.register_fake
def _loss_hvp_fake(name, options, input, target, weight, normalizer, vector):
    return torch.empty_like(input)


def _refuse_third_order(ctx, *grads):
    raise RuntimeError(_THIRD_ORDER)


torch.library.register_autograd("losskit::loss_hvp", _refuse_third_order,
                                setup_context=lambda ctx, inputs, output: None)


def _hessian_vector_product(loss, name: str, input: Tensor, target: Tensor, weight: Tensor | None,
                           normalizer: float | None, vector: Tensor) -> Tensor:
    r"""``H v``: the Hessian of ``loss``'s reduced value with respect to ``input``, times ``vector``.

    For "none" the Hessian is that of ``sum(none)``, as for the core's gradient. ``vector`` has the
    input's shape, and so has the result; float16/bfloat16 are computed in float32.
    """
    if loss.hessian.is_diagonal:  # each element's loss depends on that element alone
        hess = loss.hessian_diag(input, target, weight=weight, normalizer=normalizer)
        work = _array.compute_dtype(_XP, input.dtype)
        return (hess.to(work) * vector.to(work)).to(input.dtype)
    # softmax CE and KL (CE of the same logits plus a constant): declared by the class itself, not inherited
    if type(loss).__dict__.get("softmax_hessian", False):
        return _softmax_ce_hvp(loss, input, target, weight, normalizer, vector)
    return _autograd_hvp(loss, input, target, weight, normalizer, vector)


def _autograd_hvp(loss, input, target, weight, normalizer, vector):
    """``H v`` for a loss whose Hessian is not diagonal and has no closed form here (distillation,
    Gaussian NLL, softmax focal, Poly-1): torch's double backward through the core's array-API
    expression, which is differentiable. Slower (the ~35-pass expression), but only second-order
    calls pay it."""
    reference = loss if loss.options.impl == "xp" else loss.replace(impl="xp")

    def value(x):
        return reference(x, target, weight=weight, normalizer=normalizer).sum()

    # forward-over-reverse with torch.func: a custom op's body runs below the autograd dispatch key,
    # where torch.autograd.grad sees no graph
    _, hvp = torch.func.jvp(torch.func.grad(value), (input.detach(),), (vector.to(input.dtype),))
    return hvp.to(input.dtype)


def _softmax_ce_hvp(loss, input, target, weight, normalizer, vector):
    r"""Softmax CE: with :math:`g_i = c_i (t_i p_i - y'_i)`, :math:`H_i = c_i t_i (\mathrm{diag}(p_i) -
    p_i p_i^T)`, where :math:`c_i` is the reduction's scale of example i (weights included) and
    :math:`t_i = \sum_k y'_{ik}` (1 for integer labels)."""
    xp = _XP
    work = _array.compute_dtype(xp, input.dtype)
    z = input.to(work)
    axis = loss.example_axis(z.ndim)
    scale = loss.plan(z, target, weight=weight, normalizer=normalizer).scale
    if target.ndim == input.ndim:  # probabilities: t = (1 - a) sum_k y_k + a
        a = getattr(loss.options, "label_smoothing", 0.0)
        scale = scale * ((1 - a) * target.to(work).sum(axis) + a)
    c = scale.unsqueeze(axis) if scale.ndim else scale
    p = softmax_xp(xp, z, axis)  # exact limits for rows with +-inf
    pv = p * vector.to(work)
    hvp = c * (pv - p * pv.sum(axis, keepdim=True))
    # a weight-0 example adds 0, whatever its logits
    return torch.where(c == 0, torch.zeros_like(hvp), hvp).to(input.dtype)


#: the array-API namespace of torch tensors, found once: inside a traced forward, finding it per call
#: would make Dynamo trace array_api_compat's lookup
_XP = array_namespace(torch.empty(0))


def _batch_shape(loss, shape) -> tuple:
    axis = loss.example_axis(len(shape))
    return tuple(shape) if axis is None else tuple(s for i, s in enumerate(shape) if i != axis)


class _EagerValueAndGrad(torch.autograd.Function):
    """``losskit::value_and_grad`` for an eager call on plain CPU tensors: the same forward, context and
    backward, without the custom op's dispatch (its schema check, redispatch and Dynamo guard cost more
    than a small call's whole loss). A traced call (``torch.compile``) takes the custom op."""

    # forward(ctx, ...), not a separate setup_context: torch binds a setup_context Function's arguments
    # with inspect.signature on every call
    @staticmethod
    def forward(ctx, name, options, input, target, weight, normalizer):
        output = _value_and_grad(_core_loss(name, options), input, target, weight, normalizer, True)
        _setup(ctx, (name, options, input, target, weight, normalizer), output)
        return output

    backward = staticmethod(_backward)


def _eager(input) -> bool:
    """Whether a call may skip the custom op: an eager call (not traced, no torch.func transform) on a
    plain CPU tensor."""
    return (type(input) is Tensor and input.device.type == "cpu" and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active())


def _apply(name, options, input, target, weight, normalizer):
    input, = _arguments.autocast_float32(input)  # (torch's losses run in float32 under autocast)
    if input.dtype in _arguments.HALF:
        # computed in float32 (as the core computes half precision), the gradient kept in float32 until the
        # upstream gradient (a GradScaler's 65536) has scaled it, and rounded once by the cast's backward: the
        # saved half gradient was rounded first, and a large batch's mean put it among float16's subnormals
        # (1/N per example), where a loss scale is meant to keep it (found in review)
        return _apply(name, options, input.float(), target, weight, normalizer).to(input.dtype)
    eager = _eager(input)
    if input.requires_grad and torch.is_grad_enabled():
        if eager:
            return _EagerValueAndGrad.apply(name, options, input, target, weight, normalizer)[0]
        return _loss_value_and_grad(name, options, input, target, weight, normalizer)[0]
    if eager:
        return _value_only(name, options, input, target, weight, normalizer)
    return _loss_value(name, options, input, target, weight, normalizer)


def _no_grad_to(target, weight, input=None, input_name: str = "input") -> None:
    """Refuse a target or weight that requires grad: the backward gives them none, and a silent None
    would drop e.g. a trained teacher's gradient in distillation; one on another device than the input
    (torch's error named an op the user never called); an input that is a forward-mode dual (its
    tangent was dropped); and an input that is not a tensor (a NumPy array reached torch's attribute
    errors): the core functions take those."""
    if input is not None and not isinstance(input, Tensor):
        raise _checks.fail(input_name, "a torch.Tensor (losskit.torch's modules take tensors)", type(input).__name__,
                           "for NumPy and other arrays call the core loss (losskit.<Loss>)")
    for name, tensor in (("target", target), ("weight", weight)):
        if input is not None and tensor is not None and not isinstance(tensor, Tensor):  # (a list reached autograd)
            raise _checks.fail(name, "a torch.Tensor (losskit.torch's modules take tensors)", type(tensor).__name__,
                               f"torch.as_tensor({name})")
    _arguments.no_grad("detach it, or call the core function (e.g. losskit.softmax_cross_entropy) on the tensors: "
                       "torch autograd then differentiates through it", target=target, weight=weight)
    if input is not None:
        _arguments.same_device(input.device, input_name, target=target, weight=weight)
        _arguments.no_tangent(**{input_name: input})


_normalizer = _arguments.normalizer


def _option(module, name: str):
    options = module.core.options.as_dict()
    if name not in options:  # an AttributeError, as for any attribute a module lacks
        raise AttributeError(f"{type(module).__name__} has no option {name!r} (its options: {', '.join(options)})")
    return options[name]


class _LossModule(nn.Module):
    _name = ""

    def __init__(self, **options: Any):
        super().__init__()
        self._core = REGISTRY[self._name][0](**options)  # validates the options now
        self._options = _encode_options(self._core.options.as_dict())
        # and as the op will read them: a tensor option (class_weight=torch.tensor([1., -1.])) skips the core's
        # check of arrays, and its error came at the first forward, inside the training loop (found in review)
        _core_loss(self._name, self._options)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None,
                normalizer: float | Tensor | None = None) -> Tensor:
        _no_grad_to(target, weight, input, "input")
        return _apply(self._name, self._options, input, target, weight, _normalizer(normalizer))

    def __getattr__(self, name: str):
        # an option the loss lacks: the properties' own words (an AttributeError raised inside a property sends
        # Python to nn.Module.__getattr__, whose "has no attribute" message hid the list of options)
        if name in ("ignore_index", "label_smoothing"):
            return _option(self, name)
        return super().__getattr__(name)

    def extra_repr(self) -> str:  # the core loss's arguments, as the heads': a class_weight of 32000 abridged
        core = repr(self.core)  # (the options' JSON printed all of it: 650 kB, found in review)
        return core[core.index("(") + 1:-1]

    # read-only, as the options: the forward runs the options encoded at construction, and an assigned core
    # changed what reduction said but not what the module computed (found in review)
    core = property(lambda self: self._core, doc="the core loss (its options are the module's)")
    # read as nn.CrossEntropyLoss's attributes are (code that reads criterion.reduction); read-only, as the
    # options are the module's at construction: an assignment raises rather than being silently ignored
    reduction = property(lambda self: self.core.options.reduction, doc="the core loss's reduction")
    ignore_index = property(lambda self: _option(self, "ignore_index"),
                            doc="the core loss's ignore_index (the losses of labels only)")
    label_smoothing = property(lambda self: _option(self, "label_smoothing"),
                               doc="the core loss's label_smoothing (the losses that take it only)")

    def __reduce_ex__(self, protocol):
        cls = type(self)
        if cls is not _module(self._name) or getattr(sys.modules.get(cls.__module__), cls.__qualname__, None) is cls:
            return super().__reduce_ex__(protocol)  # a catalogue loss's class, or a user's subclass: as any module
        # the module class of a user's own loss is made here per process and is no attribute of losskit.torch,
        # where pickle would look it up: made again from the core loss, then given this module's whole state
        # (parameters, hooks, training mode, attributes)
        return module, (self.core,), self.__dict__.copy()


def _module(name: str) -> type:
    return _module_of(REGISTRY[name][0], name)


@functools.cache
def _module_of(core_cls: type, name: str) -> type:
    doc = (f"``nn.Module`` form of :class:`losskit.{core_cls.__name__}`: same options, same values, "
           f"losskit's analytic backward.\n\n    ``forward(input, target, weight=None, normalizer=None)``; "
           f"shapes and formula as the core class:\n\n    " + (core_cls.__doc__ or ""))
    return type(core_cls.__name__, (_LossModule,), {"_name": name, "__doc__": doc, "__module__": __name__})


def module(loss) -> nn.Module:
    """``loss`` (any registered Loss object, a user's own included) as an ``nn.Module`` with its options
    and losskit's analytic backward (works under ``torch.compile(fullgraph=True)``).

    >>> import losskit as lk, losskit.torch as lt  # doctest: +SKIP
    >>> criterion = lt.module(lk.HuberLoss(delta=2.0))  # doctest: +SKIP
    """
    require_loss_object(loss)
    name = name_of(loss)
    if name is None:
        raise _checks.fail("loss", "a Loss whose class declares a name (class attribute `name = \"...\"`), "
                           "so that the custom op can find it", unregistered(type(loss)))
    return _module(name)(**loss.options.as_dict())


#: one nn.Module class per catalogue loss, named as the core class
_MODULES = {cls.__name__: _module(name) for name, (cls, _) in catalogue().items()}
globals().update(_MODULES)


class _HeadModule(nn.Module):
    """A losskit head as an ``nn.Module``: ``forward(logits, target)`` is its loss with the analytic
    backward; ``activation``, ``predict`` and (a classifier's) ``predict_proba`` are the core head's."""

    _core_cls: type = _heads.Head

    def __init__(self, *args: Any, **options: Any):
        super().__init__()
        self.head = self._core_cls(*args, **options)
        self._name = _registry_name(self.head.loss_object)
        self._options = _encode_options(self.head.loss_object.options.as_dict())

    @property
    def units(self) -> int:
        return self.head.units

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None,
                normalizer: float | Tensor | None = None) -> Tensor:
        _no_grad_to(target, weight, logits, "logits")
        # the head's own layout rules ((N, 1) logits for one unit...); reshapes stay differentiable
        logits, target, _ = self.head._align(_XP, logits, target)
        return _apply(self._name, self._options, logits, target, weight, _normalizer(normalizer))

    def activation(self, logits: Tensor) -> Tensor:
        return self.head.activation(logits)

    def predict(self, logits: Tensor):
        return self.head.predict(logits)

    def extra_repr(self) -> str:  # the core head's arguments: BinaryHead(units=1, loss=...(pos_weight=2.0))
        core = repr(self.head)
        return core[core.index("(") + 1:-1]


def _predict_proba(self, logits: Tensor) -> Tensor:
    return self.head.predict_proba(logits)


def _registry_name(loss) -> str:
    name = name_of(loss)
    if name is None:
        raise TypeError(f"no registered loss for {type(loss).__name__}")
    return name


def _head_module(core_cls: type) -> type:
    doc = (f"``nn.Module`` form of :class:`losskit.{core_cls.__name__}`: ``forward(logits, target)`` "
           f"is the head's loss with losskit's analytic backward.\n\n    " + (core_cls.__doc__ or ""))
    members = {"_core_cls": core_cls, "__doc__": doc, "__module__": __name__}
    if hasattr(core_cls, "predict_proba"):  # the classifiers' (a regression head has none to forward to)
        members["predict_proba"] = _predict_proba
    return type(core_cls.__name__, (_HeadModule,), members)


BinaryHead = _head_module(_heads.BinaryHead)
MulticlassHead = _head_module(_heads.MulticlassHead)
MultilabelHead = _head_module(_heads.MultilabelHead)
RegressionHead = _head_module(_heads.RegressionHead)
QuantileHead = _head_module(_heads.QuantileHead)
GaussianHead = _head_module(_heads.GaussianHead)

from .linear import linear_binary_cross_entropy, linear_cross_entropy, linear_logprobs  # noqa: E402 - after the ops
from .linear_jsd import LinearJSDLoss  # noqa: E402 - after the ops
from .policy import LinearGRPOLoss, linear_grpo_loss  # noqa: E402 - after the ops
from .preference import LinearPreferenceLoss  # noqa: E402 - after the ops

__all__ = ["module", *_MODULES, "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "QuantileHead",
           "GaussianHead", "linear_cross_entropy", "linear_binary_cross_entropy", "linear_logprobs",
           "LinearGRPOLoss", "linear_grpo_loss", "LinearJSDLoss", "LinearPreferenceLoss"]
