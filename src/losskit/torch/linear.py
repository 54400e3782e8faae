"""``torch.autograd`` forms of the fused linear losses (see :mod:`losskit.losses.linear`), all through
one ``torch.library`` custom op (:func:`fused_linear`), opaque to ``torch.compile``.

The forward computes the loss and all gradients in one chunked sweep (never the N x V logits;
CPU tensors reach the compiled kernels as zero-copy NumPy views) and saves only the gradients;
backward scales them in place by the upstream gradient. So a training step costs one sweep of
matmuls, not a forward and a second recomputing backward, and the classifier's gradient exists
once at the peak.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import torch
from torch import Tensor

from .. import _checks
from ..losses.linear import (
    check_scalar_reduction,
    linear_binary_cross_entropy_value_and_grad,
    linear_cross_entropy_value_and_grad,
)
from ..losses.logprobs import TokenLogProbs
from ..losses.logprobs import linear_logprobs as core_linear_logprobs
from ..losses.logprobs import linear_logprobs_vjp as core_linear_logprobs_vjp
from . import _arguments
from ._first_order import first_order_only

__all__ = ["linear_cross_entropy", "linear_binary_cross_entropy", "linear_logprobs", "fused_linear",
           "encode_options"]


def _fused_reduction(function, hidden, classifier, target, bias, weight, options):
    """A linear loss with a reduced value through :func:`fused_linear`: tensor options (``weight``,
    ``class_weight``, ``pos_weight``) go to the op as tensors, NumPy ones made tensors, the rest as
    its JSON options."""
    options.setdefault("reduction", "mean")
    extras = {}
    for name, value in (("weight", weight), ("class_weight", options.pop("class_weight", None)),
                        ("pos_weight", options.pop("pos_weight", None))):
        value = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
        if isinstance(value, Tensor):
            _arguments.no_grad("detach it: the fused losses differentiate hidden, classifier and bias alone",
                               **{name: value})
            extras[name] = value
        elif value is not None:  # a number (pos_weight) or a list: a JSON option
            options[name] = value
    return fused_linear(function, hidden, classifier, target, bias=bias, extras=extras, **options)


def linear_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, **options):
    """:func:`losskit.linear_cross_entropy` with autograd: ``loss.backward()`` fills ``hidden.grad``,
    ``classifier.grad`` (and ``bias.grad``). Reductions "sum" and "mean" only. Options as the core
    function; ``weight [N]`` is the per-example weight. One chunked sweep in the forward (the
    compiled kernels on CPU tensors) computes the three gradients; backward scales them."""
    return _fused_reduction(linear_cross_entropy_value_and_grad, hidden, classifier, target, bias, weight, options)


def linear_binary_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, **options):
    """:func:`losskit.linear_binary_cross_entropy` with autograd (reductions "sum" and "mean")."""
    return _fused_reduction(linear_binary_cross_entropy_value_and_grad, hidden, classifier, target, bias, weight,
                            options)


# --- the post-training losses: one custom op for any fused linear loss, and the log-probs ---------


def _as_core(tensor):
    """A CPU tensor as a zero-copy NumPy view (the compiled kernels' path); another device's as it is
    (the core's array-API expressions run on it). Half precision on the CPU (bfloat16, which NumPy
    lacks, and float16, whose sums of a vocabulary's exps overflow) is computed in float32, as every
    losskit loss computes it: a float32 copy, the results cast back by :func:`_as_torch`."""
    if tensor is None or tensor.device.type != "cpu":
        return tensor
    tensor = tensor.detach()
    return (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()


def _as_torch(array, like, dtype=None):
    """``array`` (a core result) as a tensor on ``like``'s device, a floating one in ``dtype`` (default
    ``like``'s)."""
    if array is None:
        return None
    dtype = like.dtype if dtype is None else dtype
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array)).to(like.device)
    return tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor


def _saved_grad_dtype(hidden) -> torch.dtype:
    """The dtype the forward keeps the gradients in until backward scales them: float32 for float16 inputs.
    Why: a loss scale (GradScaler) multiplies the upstream gradient to keep small gradients out of float16's
    subnormals, but gradients rounded to float16 in the forward, at unit scale, had lost them already: a
    GRPO loss's per-token hidden gradients (~1e-7) came back 1.1e-2 off at every scale, 9 % of them 0
    (found in review). bfloat16 has float32's range: rounded at any scale, it loses the same bits."""
    return torch.float32 if hidden.dtype == torch.float16 else hidden.dtype


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@torch.compiler.assume_constant_result
def _path(function) -> str:
    """Where the custom op finds ``function`` (ops take strings); a constant of a compiled graph."""
    return f"{function.__module__}:{function.__qualname__}"


@torch.library.custom_op("losskit::linear_value_and_grad", mutates_args=())
def _linear_value_and_grad(function: str, options: str, hidden: Tensor, classifier: Tensor, target: Tensor,
                           bias: Tensor | None, extras: list[Tensor], extra_names: str,
                           aux_names: str, normalizer: float | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    value, grads, aux = _call_core(function, options, hidden, classifier, target, bias, extras, extra_names,
                                   aux_names, normalizer, with_grad=True)
    grad_hidden, grad_classifier, grad_bias = (_as_torch(g, hidden, _saved_grad_dtype(hidden)) for g in grads)
    return (_value_tensor(value, hidden), grad_hidden, grad_classifier,
            hidden.new_empty(0) if grad_bias is None else grad_bias, _stats(aux, aux_names, hidden))


def _call_core(function: str, options: str, hidden, classifier, target, bias, extras, extra_names: str,
               aux_names: str, normalizer, with_grad: bool):
    """The core ``function``'s ``(value, grads or None, aux dict)`` for an op's arguments: ``function`` is a
    value-and-grad form when ``with_grad`` (``(value, grads[, aux])``), else a value-only one (``value`` or
    ``(value, aux)``)."""
    kwargs = dict(zip(extra_names.split(",") if extra_names else (), map(_as_core, extras), strict=True))
    kwargs.update(json.loads(options))
    if normalizer is not None:
        kwargs["normalizer"] = normalizer
    if aux_names:
        kwargs["aux"] = True
    result = _function(function)(_as_core(hidden), _as_core(classifier), _as_core(target), bias=_as_core(bias),
                                 **kwargs)
    if with_grad:
        return result[0], result[1], result[2] if aux_names else {}
    return (result[0], None, result[1]) if aux_names else (result, None, {})


def _value_tensor(value, hidden):
    return torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value, dtype=hidden.dtype,
                           device=hidden.device)


def _stats(aux: dict, aux_names: str, hidden):
    """The aux statistics as one float64 tensor on hidden's device, as the fakes' (a compiled graph takes the
    fake's device as the output's)."""
    return torch.tensor([float(aux[name]) for name in aux_names.split(",") if name], dtype=torch.float64,
                        device=hidden.device)


@torch.library.custom_op("losskit::linear_value", mutates_args=())
def _linear_value(function: str, options: str, hidden: Tensor, classifier: Tensor, target: Tensor,
                  bias: Tensor | None, extras: list[Tensor], extra_names: str, aux_names: str,
                  normalizer: float | None) -> tuple[Tensor, Tensor]:
    """A fused linear loss's value (and aux statistics) from its core value-only function: what a call that
    asks for no gradient runs (one gemm per chunk, not three, and no [V, D] gradient buffer)."""
    value, _, aux = _call_core(function, options, hidden, classifier, target, bias, extras, extra_names,
                               aux_names, normalizer, with_grad=False)
    return _value_tensor(value, hidden), _stats(aux, aux_names, hidden)


@_linear_value.register_fake
def _linear_value_fake(function, options, hidden, classifier, target, bias, extras, extra_names, aux_names,
                       normalizer):
    n_aux = len([name for name in aux_names.split(",") if name])
    return hidden.new_empty(()), hidden.new_empty(n_aux, dtype=torch.float64)


@_linear_value_and_grad.register_fake
def _linear_value_and_grad_fake(function, options, hidden, classifier, target, bias, extras, extra_names,
                                aux_names, normalizer):
    n_aux = len([name for name in aux_names.split(",") if name])
    saved = _saved_grad_dtype(hidden)
    return (hidden.new_empty(()), torch.empty_like(hidden, dtype=saved), torch.empty_like(classifier, dtype=saved),
            hidden.new_empty(0, dtype=saved) if bias is None else torch.empty_like(bias, dtype=saved),
            hidden.new_empty(n_aux, dtype=torch.float64))


#: the error of a second derivative through a fused linear loss
_SECOND_ORDER = ("losskit.torch: the fused linear losses are first-order (their backward scales gradients the "
                 "forward sweep computed, never the N x V logits): a second derivative (create_graph=True for a "
                 "gradient penalty or a Hessian-vector product) needs the logits materialised (hidden @ "
                 "classifier.T and the loss's formula in torch)")


#: the error of a second backward through one forward of a fused linear loss
_SECOND_BACKWARD = ("losskit.torch: a fused linear loss's backward runs once per forward (it scales the gradients "
                    "its forward sweep computed, in place, so as not to hold a second [V, D] array): call the loss "
                    "again for another backward (retain_graph=True does not keep them)")


def _linear_setup(ctx, inputs, output):
    ctx.has_bias = inputs[5] is not None
    ctx.n_extras = len(inputs[6])
    ctx.used = False
    # the op's gradient outputs are never differentiated: without this, autograd would hand backward a
    # zero tensor for each (one the size of the classifier: a second [V, D] array at the peak), and the
    # gradients backward returns would carry this op's graph (they are its outputs)
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(*output[1:])
    # the forward computed every gradient: saved and scaled in backward, no second sweep; the inputs are
    # the anchors of a create_graph=True backward's refusal
    ctx.save_for_backward(*output[1:4], inputs[2], inputs[3], inputs[5])


def _linear_backward(ctx, upstream, *unused):
    if upstream is None:  # only a gradient output was used (they carry none)
        return (None,) * 6 + ([None] * ctx.n_extras, None, None, None)
    if ctx.used:  # (torch's own words blamed an in-place operation of the user's)
        raise RuntimeError(_SECOND_BACKWARD)
    ctx.used = True
    grad_hidden, grad_classifier, grad_bias, hidden, classifier, bias = ctx.saved_tensors
    # scaled in place: the saved gradients are this op's own buffers, read by this backward only, and
    # a copy of the classifier's would hold a second [V, D] array at the peak (501 MiB at V = 128256,
    # D = 1024); a batched upstream (is_grads_batched) cannot scale a plain tensor in place
    if _arguments.batched(upstream):
        grads = (grad_hidden * upstream, grad_classifier * upstream, grad_bias * upstream if ctx.has_bias else None)
    else:
        grads = (grad_hidden.mul_(upstream), grad_classifier.mul_(upstream),
                 grad_bias.mul_(upstream) if ctx.has_bias else None)
    # (float16 inputs: kept in float32 until scaled, then rounded to the inputs' dtypes, as autograd's own are)
    grads = tuple(None if g is None else g.to(dtype)
                  for g, dtype in zip(grads, (hidden.dtype, classifier.dtype, hidden.dtype), strict=True))
    grads = first_order_only(grads, (hidden, classifier, bias, upstream), _SECOND_ORDER)
    return (None, None, grads[0], grads[1], None, grads[2], [None] * ctx.n_extras, None, None, None)


torch.library.register_autograd("losskit::linear_value_and_grad", _linear_backward, setup_context=_linear_setup)


def encode_options(options: dict) -> str:
    """Options (plain values) as the custom ops' JSON string. A module encodes its options once, at
    construction, and hands the string to :func:`fused_linear`: read as attributes inside
    ``torch.compile``, its floats would turn symbolic when a second instance with other values
    recompiles the same ``forward``, and symbolic values cannot be encoded. NumPy numbers are taken as
    Python's; any other value that JSON cannot hold is refused, naming its option."""
    return json.dumps({name: _plain(name, value) for name, value in options.items()}, sort_keys=True)


def _plain(name: str, value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(name, item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _checks.fail(name, "a number, a string, a boolean, None or a list of them (an option of the fused op)",
                       f"{type(value).__name__} {value!r:.60}")


@torch.compiler.assume_constant_result
def _encode(options: dict) -> str:
    """:func:`encode_options` for a call's own constants: computed when ``torch.compile`` traces (a
    constant of the graph), not in it."""
    return encode_options(options)


def fused_linear(function, hidden, classifier, target, *, bias=None, extras=None, aux=(), encoded_options=None,
                 argument_names=("hidden", "classifier", "target", "bias"), required=(), same_dtype=(),
                 value_function=None, **options):
    """The autograd form of a core fused linear loss ``function(hidden, classifier, target, *, bias,
    **extras, **options) -> (value, (grad_hidden, grad_classifier, grad_bias)[, aux])``: one
    ``torch.library`` custom op (opaque to ``torch.compile``), whose forward runs the core's one
    sweep (the compiled kernels on CPU tensors, through zero-copy views; the array-API expressions
    on other devices) and keeps the three gradients; backward scales them. ``extras``: named
    tensors the loss reads and never differentiates (reference log-probs, advantages). ``aux``:
    names of the scalar statistics to return beside the value, as a dict of 0-d float64 tensors
    (logged numbers: no gradient). ``encoded_options``: the options as :func:`encode_options`
    made them, in place of ``**options`` (what a module passes; see there). ``argument_names``: the caller's
    names of the first four arguments, for its errors. ``required``: the extras that may not be None (a None
    extra is left out of the op); ``same_dtype``: the floating extras that must be of ``hidden``'s dtype (a
    teacher's layer). ``value_function``: the core's value-only form, which a call that asks for no gradient
    runs (``torch.no_grad``, an evaluation loop: it computed every gradient, twice the time)."""
    check_scalar_reduction(options.get("reduction"))
    for name in required:
        if (extras or {}).get(name) is None:
            raise _checks.fail(name, "a torch.Tensor", "None")
    extras = {name: value for name, value in (extras or {}).items() if value is not None}
    # under autocast a float32 layer beside half hidden states (autocast's output) was refused as two dtypes;
    # torch's losses run in float32 there, and so do these (their half precision is float32 inside anyway)
    hidden, classifier, bias, *same = _arguments.autocast_float32(hidden, classifier, bias,
                                                                   *(extras.get(name) for name in same_dtype))
    extras.update((name, value) for name, value in zip(same_dtype, same, strict=True) if value is not None)
    _checked(hidden, classifier, target, bias, extras, argument_names)
    for name in same_dtype:
        _same_dtype(extras.get(name), name, hidden, argument_names[0])
    # the normalizer an argument of the op, not a constant of a compiled graph: it changes per step
    normalizer = _arguments.normalizer(options.pop("normalizer", None))
    encoded = encoded_options if encoded_options is not None else _encode(options)
    arguments = (hidden, classifier, target, bias, list(extras.values()), ",".join(extras), ",".join(aux), normalizer)
    asked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, classifier, bias))
    if value_function is not None and not asked:
        value, stats = _linear_value(_path(value_function), encoded, *arguments)
    else:
        value, _, _, _, stats = _linear_value_and_grad(_path(function), encoded, *arguments)
    if not aux:
        return value
    return value, dict(zip(aux, stats.detach().unbind(0), strict=True))


def _checked(hidden, classifier, target, bias, extras, names=("hidden", "classifier", "target", "bias")) -> None:
    """The fused ops' arguments refused by name (``names``: the caller's for the first four): tensors (a list
    reached torch's schema error), on the hidden state's device (a meta tensor among CPU ones sent the op to
    its fake: uninitialised memory out), a floating bias in hidden's dtype (the core's rule,
    ``losses.linear.check_bias``: a half bias beside float32 hidden states was taken here alone), no gradient
    asked of the target (silently none), no forward-mode tangent. (The post-training losses' extras, a
    teacher or reference log-probs, are documented constants: they get no gradient.)"""
    hint = "the torch forms take tensors (the core function, losskit.<name>, takes NumPy arrays)"
    h_name, c_name, t_name, b_name = names
    main = {h_name: hidden, c_name: classifier, t_name: target}
    for name, value in main.items():
        if value is None:
            raise _checks.fail(name, "a torch.Tensor", "None")
    _arguments.tensors(hint, **main, **{b_name: bias})
    _arguments.tensors(hint, **extras)
    _arguments.same_device(hidden.device, h_name, **{c_name: classifier, t_name: target, b_name: bias}, **extras)
    # the core's rule (losses.linear.check_layer): a classifier of hidden's dtype. Half precision runs in float32
    # here, and a float32 classifier beside bfloat16 hidden states was taken, its gradient rounded to bfloat16
    # (float16: inf at sums past 65504)
    _same_dtype(classifier, c_name, hidden, h_name)
    _same_dtype(bias, b_name, hidden, h_name, integer_ok=True)
    _arguments.no_grad("detach it: the fused losses differentiate hidden, classifier and bias alone",
                       **{t_name: target})
    _arguments.no_tangent(**{h_name: hidden, c_name: classifier, b_name: bias})


def _same_dtype(tensor, name: str, hidden, hidden_name: str, integer_ok: bool = False) -> None:
    """A floating ``tensor`` of ``hidden``'s dtype, or None (``integer_ok``: an integer one too, promoted as the
    core promotes a bias; the core refuses an integer classifier itself)."""
    if tensor is not None and tensor.is_floating_point() and tensor.dtype != hidden.dtype:
        expected = f"dtype {hidden.dtype} ({hidden_name}'s)" + (" or an integer tensor" if integer_ok else "")
        raise _checks.fail(name, expected, f"dtype {tensor.dtype}",
                           "cast it (mixed precision: cast the layer with its input)")


@torch.library.custom_op("losskit::linear_logprobs", mutates_args=())
def _linear_logprobs(options: str, hidden: Tensor, classifier: Tensor, target: Tensor,
                     bias: Tensor | None, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    result = core_linear_logprobs(_as_core(hidden), _as_core(classifier), _as_core(target), bias=_as_core(bias),
                                  entropy=True, accuracy=True, temperature=temperature, **json.loads(options))
    logps, entropy, accuracy = (_as_torch(a, hidden) for a in result)
    return logps, entropy, accuracy


@_linear_logprobs.register_fake
def _linear_logprobs_fake(options, hidden, classifier, target, bias, temperature):
    return (hidden.new_empty(target.shape), hidden.new_empty(target.shape),
            hidden.new_empty(target.shape, dtype=torch.bool))


@torch.library.custom_op("losskit::linear_logprobs_vjp", mutates_args=())
def _linear_logprobs_vjp(options: str, hidden: Tensor, classifier: Tensor, target: Tensor, bias: Tensor | None,
                         upstream: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    grads = core_linear_logprobs_vjp(_as_core(hidden), _as_core(classifier), _as_core(target),
                                     _as_core(upstream.contiguous()), bias=_as_core(bias), temperature=temperature,
                                     **json.loads(options))
    grad_hidden, grad_classifier, grad_bias = (_as_torch(g, hidden) for g in grads)
    return grad_hidden, grad_classifier, hidden.new_empty(0) if grad_bias is None else grad_bias


@_linear_logprobs_vjp.register_fake
def _linear_logprobs_vjp_fake(options, hidden, classifier, target, bias, upstream, temperature):
    return (torch.empty_like(hidden), torch.empty_like(classifier),
            hidden.new_empty(0) if bias is None else torch.empty_like(bias, dtype=hidden.dtype))


def _logprobs_setup(ctx, inputs, output):
    options, hidden, classifier, target, bias, _ = inputs
    ctx.options, ctx.temperature = options, inputs[5]
    ctx.save_for_backward(hidden, classifier, target, bias)


def _logprobs_backward(ctx, upstream, *unused):
    hidden, classifier, target, bias = ctx.saved_tensors
    if upstream is None:
        return None, None, None, None, None, None
    grad_hidden, grad_classifier, grad_bias = _linear_logprobs_vjp(ctx.options, hidden, classifier, target, bias,
                                                                   upstream, ctx.temperature)
    grads = first_order_only((grad_hidden, grad_classifier, grad_bias if bias is not None else None),
                             (hidden, classifier, bias, upstream), _SECOND_ORDER)
    return None, grads[0], grads[1], None, grads[2], None


torch.library.register_autograd("losskit::linear_logprobs", _logprobs_backward, setup_context=_logprobs_setup)


def linear_logprobs(hidden, classifier, target, *, bias=None, temperature=1.0, ignore_index=-100, entropy=False,
                    accuracy=False, chunk_size=None):
    """:func:`losskit.linear_logprobs` with autograd into ``hidden``, ``classifier`` and ``bias``: the
    forward is one chunked sweep (the log-probs, entropy and argmax test together); backward is a
    second sweep that recomputes each chunk's logits (the upstream gradient is known only then).
    The entropy and the accuracy carry no gradient."""
    _checked(hidden, classifier, target, bias, {})
    # the temperature an argument of the op (a constant of a compiled graph could not change between calls)
    options = _encode({"chunk_size": chunk_size, "ignore_index": ignore_index})
    temperature = _arguments.number(temperature, "temperature")
    entropy, accuracy = _checks.flag(entropy, "entropy"), _checks.flag(accuracy, "accuracy")
    logps, entropy_, accuracy_ = _linear_logprobs(options, hidden, classifier, target, bias, temperature)
    if not (entropy or accuracy):
        return logps
    return TokenLogProbs(logps, entropy_.detach() if entropy else None, accuracy_ if accuracy else None)
