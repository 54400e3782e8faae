"""Half-precision input to the fused linear losses, computed in float32.

A vocabulary's sum of exponentials passes float16's largest number (65504) as soon as V does, so
float16 logits computed in float16 give ``-inf`` log-probs and NaN gradients: every losskit loss
computes half precision in float32 (``_array.compute_dtype``) and returns the input's dtype. The
linear losses take the layer rather than logits, so the widening is of their array arguments: a
float32 copy of each (the classifier's doubles its memory for the call), the floating results cast
back. The torch forms widen before they reach here (``losskit.torch.linear``), bfloat16 included.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

from .. import _array

__all__ = ["computes_half_in_float32"]


def computes_half_in_float32(fn):
    """Wrap a linear loss whose first two parameters are the hidden states and the classifier: when
    those are float16 (or any float narrower than 32 bits), by position or by keyword, every floating
    array argument of that dtype is passed as float32 and every floating array of the result is cast
    back to it. Other calls pass through untouched (a classifier of another dtype than the hidden
    states' is then refused by the loss's own check)."""
    hidden_name, classifier_name = list(inspect.signature(fn).parameters)[:2]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        hidden = args[0] if args else kwargs.get(hidden_name)
        classifier = args[1] if len(args) > 1 else kwargs.get(classifier_name)
        dtype = getattr(hidden, "dtype", None)
        if dtype is None or not _array.is_array(hidden) or getattr(classifier, "dtype", None) != dtype:
            return fn(*args, **kwargs)
        xp = _array.namespace(hidden=hidden)[0]
        if not _array.isdtype(xp, dtype, "real floating") or _array.compute_dtype(xp, dtype) == dtype:
            return fn(*args, **kwargs)
        work = _array.compute_dtype(xp, dtype)
        # a floating bias of another dtype than the hidden states' is refused by the loss's own check: called
        # unwidened, so that it sees the true dtypes (widened, a float32 bias beside float16 hidden states was
        # taken, and a float64 one refused as not "float32 (hidden's)", found in review)
        if any(name.endswith("bias") and _array.is_array(value) and value.dtype != dtype
               and _array.isdtype(xp, value.dtype, "real floating") for name, value in kwargs.items()):
            return fn(*args, **kwargs)

        def widen(value):
            if _array.is_array(value) and value.dtype == dtype:
                return xp.astype(value, work)
            return value

        result = fn(*map(widen, args), **{k: widen(v) for k, v in kwargs.items()})
        return _narrow(xp, result, work, dtype)

    return wrapper


def _narrow(xp, value, work, dtype):
    """``value`` with its arrays of dtype ``work`` cast to ``dtype``, through tuples, named tuples,
    lists, dicts and dataclasses."""
    if _array.is_array(value):
        return xp.astype(value, dtype) if value.dtype == work else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)._make(_narrow(xp, v, work, dtype) for v in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_narrow(xp, v, work, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _narrow(xp, v, work, dtype) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _narrow(xp, getattr(value, f.name), work, dtype)
                                            for f in dataclasses.fields(value) if f.init})
    return value
