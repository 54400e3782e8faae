"""The checks losskit.torch makes of a call's arguments before its custom ops, so that a bad one is
refused by name (:class:`~losskit.LossInputError`) rather than by torch's schema, a kernel deep
inside, or not at all: tensors where tensors are taken, all on the input's device, no gradient
asked of what gets none, no forward-mode tangent (the ops have no ``jvp``), a normalizer read as a
number."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import forward_ad

from .. import _checks

__all__ = ["tensors", "same_device", "no_grad", "no_tangent", "number", "normalizer", "batched", "autocast_float32"]

#: the floating dtypes autocast computes in, which it runs torch's own losses above
HALF = (torch.float16, torch.bfloat16)


def autocast_float32(*tensors):
    """``tensors`` with each half-precision one as float32 where autocast is on for the first one's device
    (None and integer tensors as they are); else as given. Why: autocast runs torch's losses in float32
    (``cross_entropy``, ``mse_loss``... are on its float32 list) and a loss in half precision broke the
    usual recipe: its float16 value overflowed (an MSE of 9e4 was inf), and GradScaler's default scale
    (65536, above float16's 65504) became an infinite upstream gradient, so the first step was skipped
    and the scale halved (found in review). The cast is differentiable: gradients reach the half
    tensors in their own dtype, as autocast's do."""
    first = tensors[0]
    if not (isinstance(first, Tensor) and first.dtype in HALF):  # (float32 inputs and meta ones: as given)
        return tensors
    device = first.device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return tensors
    return tuple(t.float() if isinstance(t, Tensor) and t.dtype in HALF else t for t in tensors)


def tensors(hint: str, **named) -> None:
    """Each of ``named`` (None allowed) a ``torch.Tensor``."""
    for name, value in named.items():
        if value is not None and not isinstance(value, Tensor):
            raise _checks.fail(name, "a torch.Tensor", type(value).__name__, hint)


def same_device(device, device_of: str, **named) -> None:
    """Each tensor of ``named`` on ``device`` (``device_of``'s): a tensor on the meta device beside CPU
    ones sent a fused op to its shape-only fake, whose values were uninitialised memory."""
    for name, value in named.items():
        if isinstance(value, Tensor) and value.device != device:
            raise _checks.fail(name, f"a tensor on {device_of}'s device ({device})", f"one on {value.device}",
                               f"move it with .to({str(device)!r})")


def no_grad(hint: str, **named) -> None:
    """Each tensor of ``named`` not requiring grad while autograd records: the ops give gradients to
    their inputs alone, and a silent None would drop e.g. a trained teacher's gradient."""
    if not torch.is_grad_enabled():
        return
    for name, value in named.items():
        if isinstance(value, Tensor) and value.requires_grad:
            raise _checks.fail(name, "a tensor that does not require grad (losskit.torch differentiates the "
                               "input alone)", "requires_grad=True", hint)


def no_tangent(**named) -> None:
    """No tensor of ``named`` a forward-mode dual: the ops' results carried no tangent (a silent None
    where ``F.cross_entropy`` gives the JVP)."""
    if forward_ad._current_level < 0:  # no dual level open: no tensor has a tangent (cheap: a module global)
        return
    for name, value in named.items():
        if isinstance(value, Tensor) and forward_ad.unpack_dual(value).tangent is not None:
            raise _checks.fail(name, "a tensor without a forward-mode tangent (losskit.torch's ops have an "
                               "analytic backward, no jvp)", "a dual tensor (torch.autograd.forward_ad)",
                               "use reverse mode (backward() or torch.autograd.grad)")


def number(value, name: str):
    """A float argument of an op (a traced number of ``torch.compile`` kept symbolic); its range is the core's
    to check."""
    if isinstance(value, (int, float, torch.SymInt, torch.SymFloat)) and not isinstance(value, bool):
        return torch.sym_float(value)
    if _checks.is_number(value):  # a NumPy number
        return float(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item") and _checks.is_number(value.item()):
        # read as a number: a tensor that asks for a gradient would get none (a silent None)
        no_grad("detach it: it is read as a number", **{name: value})
        return float(value.item())  # a 0-d NumPy array or tensor
    raise _checks.fail(name, "a number", repr(value)[:40] if value is None or isinstance(value, str) else
                       type(value).__name__)


def normalizer(value):
    """``normalizer`` as the ops take it: None, a float, or a symbolic number of ``torch.compile`` (a
    Python number that changes between compiled steps is traced as one: probing it as an array failed
    the trace)."""
    if value is None:
        return None
    if isinstance(value, (int, float, torch.SymInt, torch.SymFloat)) and not isinstance(value, bool):
        return number(value, "normalizer")  # (a traced number is a float or an int to torch.compile)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise _checks.fail("normalizer", "a number or a one-element tensor",
                               f"a tensor of shape {tuple(value.shape)}")
        if value.requires_grad and torch.is_grad_enabled():  # read as a number: it would get no gradient
            raise _checks.fail("normalizer", "a tensor that does not require grad (it is read as a number)",
                               "requires_grad=True", "detach it")
        value = value.item()  # a host number: custom ops take floats
    elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a 0-d NumPy array
        value = value.item()
    if not _checks.is_number(value):
        raise _checks.fail("normalizer", "a number or a one-element tensor", f"{type(value).__name__} {value!r:.40}")
    return float(value)


def batched(upstream) -> bool:
    """Whether a backward's upstream gradient is batched (``is_grads_batched=True`` runs the backward under
    the legacy vmap, ``jacobian(vectorize=True)`` and torch.func under functorch's): it has no ``.item()``,
    and a plain tensor cannot be scaled by it in place."""
    functorch = torch._C._functorch
    return bool(torch._C._are_functorch_transforms_active() or functorch.is_batchedtensor(upstream)
                or functorch.is_legacy_batchedtensor(upstream))
