"""Input validation shared by every public entry point.

Hyper-parameters are checked once (in ``Loss.__init__``); data at each call. Value checks
(label range, probabilities in [0, 1], NaN targets) need to read the data, so they run only
on arrays whose values can be read cheaply: they are skipped for Dask arrays (reading would
compute the whole graph) and for JAX tracers inside ``jit`` (reading is impossible).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _array
from ._errors import LossInputError, fail

__all__ = ["LossInputError", "fail"]

_NUMPY_BOOL = np.bool_

REDUCTIONS = ("none", "sum", "mean")
IMPLS = ("auto", "xp", "fused")


def reduction(value: Any) -> str:
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise fail("reduction", 'one of "none", "sum", "mean"', repr(value))
    return value


def impl(value: Any) -> str:
    if not isinstance(value, str) or value not in IMPLS:
        raise fail("impl", 'one of "auto" (compiled kernels for NumPy input when available), '
                   '"xp" (the array-API path), "fused" (the kernels, or an error where none takes a non-empty '
                   'call)', repr(value))
    return value


def flag(value: Any, name: str) -> bool:
    """``value`` if it is True or False, else a LossInputError naming ``name``."""
    if not isinstance(value, bool):
        raise fail(name, "True or False", repr(value))
    return value


def is_number(value: Any) -> bool:
    """A real number, Python's or NumPy's (``np.float32(0.1)``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, _NUMPY_BOOL))


def is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, _NUMPY_BOOL))


def int_at_least(value: Any, name: str, low: int, expected: str | None = None) -> int:
    """``value`` if it is an int (not a bool) >= ``low``, else a LossInputError naming ``name``."""
    if not is_integer(value) or value < low:
        raise fail(name, expected or f"an int >= {low}", repr(value))
    return int(value)


def integer(value: Any, name: str) -> int:
    if not is_integer(value):
        raise fail(name, "an int", repr(value))
    return int(value)


def label_smoothing(value: Any) -> float:
    if not is_number(value) or not 0.0 <= float(value) < 1.0:
        raise fail("label_smoothing", "a float in [0, 1)", repr(value))
    return float(value)


def ignore_index(value: Any) -> int | None:
    if value is None:
        return None
    if not is_integer(value):
        raise fail("ignore_index", "None or an int", repr(value))
    return int(value)


def given(**arrays: Any) -> None:
    """Refuse the first of ``arrays`` that is None, naming it: an array the call needs (None reached the
    array library as an attribute error)."""
    for name, value in arrays.items():
        if value is None:
            raise fail(name, "an array", "None")


def normalizer(value: Any, xp=None, dtype=None, *, library: bool = True) -> Any:
    """A positive number (or 0-d real array) that replaces the denominator of "mean". With ``dtype`` (the
    working dtype of the call, of namespace ``xp``) its reciprocal, the scale of every example, must be
    finite there: a float32 call given 1e-50 took it as 0 and then, as an empty batch's denominator, 1 (the
    "sum"), without a word. A 0-d NumPy array is a number; with ``library``, so is a 0-d array of another
    library than ``xp``'s, read now (it reached that library's attribute errors)."""
    if value is None:
        return None
    if isinstance(value, (bool, _NUMPY_BOOL)):
        raise fail("normalizer", "a positive number", repr(value))
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        value = value.item()  # a host number, whatever the input's library
    if library and xp is not None and _array.is_array(value) and tuple(value.shape) == () \
            and _array.array_namespace(value) is not xp:
        try:  # another library's 0-d array: its value, read now (no gradient flows into another library)
            value = value.item()
        except Exception:  # noqa: BLE001 - a tracer, or an array that cannot be read on the host
            raise fail("normalizer", f"a number or a 0-d array of the input's library ({xp.__name__})",
                       f"a 0-d array of {_array.array_namespace(value).__name__} that cannot be read now") from None
    if is_number(value):
        if isinstance(value, complex) or np.iscomplexobj(value):
            raise fail("normalizer", "a positive real number", repr(value))
        try:
            as_float = float(value)
        except OverflowError:  # an int past float64 (10**400): a raw OverflowError
            as_float = math.inf
        if not (math.isfinite(as_float) and value > 0):
            raise fail("normalizer", "a positive finite number", f"{value!r:.40}")
        _reciprocal_fits(as_float, xp, dtype)
        return float(value)
    if _array.is_array(value):
        if tuple(value.shape) != ():
            raise fail("normalizer", "a positive number or 0-d array", f"shape {tuple(value.shape)}")
        own = _array.array_namespace(value)
        if not _array.isdtype(own, value.dtype, ("real floating", "integral")):
            raise fail("normalizer", "a positive number or 0-d array of real numbers", f"dtype {value.dtype}")
        # one array expression read once (None under a trace: checked when concrete); no float() of the
        # value, which a tracer of jax.grad in the normalizer cannot give
        ok = _array.concrete_bool((value > 0) & (value < math.inf))
        if ok is False:
            raise fail("normalizer", "a positive finite number", f"{float(value)!r} (a 0-d array)")
        if ok is None:  # traced (jit): a value outside (0, inf) gives NaN, never the loss of other math (0 gave
            # inf, -2 a negative loss whose gradient pointed uphill, found in review), as a bad label does there
            if not _array.isdtype(own, value.dtype, "real floating"):
                value = own.astype(value, dtype if dtype is not None else own.float32)
            return own.where((value > 0) & (value < math.inf), value, own.full_like(value, math.nan))
        if ok and dtype is not None:
            largest = float(xp.finfo(dtype).max)
            if _array.concrete_bool((value * largest >= 1) & (value <= largest)) is False:
                _reciprocal_fits(float(value), xp, dtype)  # raises, naming the bound
        return value
    raise fail("normalizer", "a positive number", type(value).__name__)


def _reciprocal_fits(value: float, xp, dtype) -> None:
    """Refuse a positive ``value`` whose reciprocal overflows ``dtype`` (or that rounds to 0 in it)."""
    if dtype is None:
        return
    largest = float(xp.finfo(dtype).max)
    if value * largest < 1:
        raise fail("normalizer", f"a number whose reciprocal fits {dtype} (at least {1 / largest:.3g})",
                   repr(value), "the mean's scale is 1 / normalizer")
    if value > largest:  # it is cast to the call's dtype: inf there, and the mean a silent 0
        raise fail("normalizer", f"a number that fits {dtype} (at most {largest:.3g})", repr(value))


def known_options(options, allowed, owner: str, hint: str = "") -> None:
    """Raise naming the first key of ``options`` not in ``allowed``, with the options ``owner`` takes."""
    for name in options:
        if name not in allowed:
            raise fail(name, f"an option of {owner} ({', '.join(allowed)})", "an unknown option", hint)


def axis(value: Any, ndim: int) -> int:
    value = integer(value, "axis")
    if not -ndim <= value < ndim:
        raise fail("axis", f"an int in [{-ndim}, {ndim}) for logits of {ndim} dimension(s)", repr(value))
    return value % ndim


def floating(xp, array, name: str) -> None:
    if not _array.isdtype(xp, array.dtype, "real floating"):
        raise fail(name, "a real floating-point array", f"dtype {array.dtype}",
                   "cast integer predictions with .astype(float32) first" if name != "target" else "")


def known_shapes(**arrays) -> None:
    """Refuse, naming it, an array whose sizes are unknown (a Dask array after a boolean filter: NaN sizes,
    no two of which compare equal, so every shape check read "expected (nan, 4), got (nan, 4)")."""
    for name, array in arrays.items():
        if array is None or type(array) is np.ndarray:  # (the common case: a small call's cost)
            continue
        shape = tuple(getattr(array, "shape", ()))
        if any(s is None or (isinstance(s, float) and math.isnan(s)) for s in shape):
            raise fail(name, "an array of known shape (losskit compares shapes, and never broadcasts)",
                       f"shape {shape}, sizes unknown until computed (a lazy array after a filter)",
                       "call .compute_chunk_sizes() on the Dask arrays first")


def same_shape(name: str, array, ref_name: str, ref_shape: tuple) -> None:
    shape = tuple(array.shape)
    if shape != tuple(ref_shape):
        raise fail(name, f"shape {tuple(ref_shape)} (the shape of {ref_name}; losskit never broadcasts)",
                   f"shape {shape}")


def _extremes(xp, array):
    """``(min, max)`` in two streaming reductions (no boolean temporaries of the array's size),
    or None for an empty array. A NaN propagates into both (the array API's rule for min/max)."""
    if _array.size(array) == 0:
        return None
    return xp.min(array), xp.max(array)


def no_nan(xp, array, name: str) -> bool:
    """Raise, naming ``name``, for a NaN in ``array``. Returns whether its values could be read: False for a
    traced (JAX ``jit``) or lazy (Dask) array, which no check can read (see :func:`nan_where`)."""
    if not _array.size(array):
        return True
    found = _array.concrete_bool(xp.isnan(xp.max(array)))  # one streaming reduction: a NaN propagates into the max
    if found:
        raise fail(name, "no NaN values", "NaN")
    return found is not None


def nan_where(xp, array, outside):
    """``array`` with NaN where ``outside``: a call whose target values no check can read (a traced or lazy
    array: :func:`no_nan` gave False) gives a value outside the loss's domain a NaN loss and gradient, as it
    gives a label out of range (:func:`bad_labels_nan`), not the value of other math (a Tweedie deviance of
    power 3 at y = -1 was -3; BCE at y = 1.5 a finite number)."""
    return xp.where(outside, xp.full_like(array, math.nan), array)


def _extremes_without_nan(xp, array, name: str):
    """``(min, max)``, None for an empty array; a NaN raises, naming ``name``."""
    extremes = _extremes(xp, array)
    if extremes is not None and _array.concrete_bool(xp.isnan(extremes[0]) | xp.isnan(extremes[1])):
        raise fail(name, "no NaN values", "NaN")
    return extremes


def in_unit_interval(xp, array, name: str, hint: str = "") -> bool:
    """Raise, naming ``name``, for a value outside [0, 1] (or NaN). Returns whether the values could be read
    (as :func:`no_nan`)."""
    extremes = _extremes_without_nan(xp, array, name)
    if extremes is None:
        return True
    outside = _array.concrete_bool((extremes[0] < 0) | (extremes[1] > 1))
    if outside:
        lo, hi = (float(v) for v in extremes)
        raise fail(name, "values in [0, 1]", f"values in [{lo:.6g}, {hi:.6g}]", hint)
    return outside is not None


def row_sum_tolerance(float64: bool, k: int, eps: float, slack: float = 0.0) -> float:
    """How far from 1 a row of ``k`` probabilities may sum (:func:`rows_sum_to_one`; the compiled KL,
    Poly-1 and softmax focal kernels check the same bound)."""
    return (1e-6 if float64 else 1e-3) + slack + 8 * k ** 0.5 * eps


def _row_sum_tolerance_of(xp, array, slack: float) -> float:
    return row_sum_tolerance(array.dtype == xp.float64, array.shape[-1], float(xp.finfo(array.dtype).eps), slack)


def probability_rows(xp, array, name: str, hint: str = "", slack: float = 0.0):
    """``array``, after raising, naming ``name``, for a value outside [0, 1] or a row (the last axis) that does
    not sum to 1 (:func:`in_unit_interval`, :func:`rows_sum_to_one`). A traced or lazy array, whose values no
    check can read, comes back with NaN in such a row (:func:`nan_where`): a soft target of twice the
    probabilities in a Dask graph gave a finite loss."""
    if probability_rows_read(xp, array, name, hint, slack):
        return array
    return nan_where(xp, array, bad_probability_rows(xp, array, slack)[..., None])


def probability_rows_read(xp, array, name: str, hint: str = "", slack: float = 0.0) -> bool:
    """:func:`in_unit_interval` and :func:`rows_sum_to_one` of ``array`` (raising, naming ``name``); whether
    their values could be read."""
    return in_unit_interval(xp, array, name, hint) & rows_sum_to_one(xp, array, name, hint, slack)


def bad_probability_rows(xp, array, slack: float = 0.0):
    """Per row (the last axis), whether it is no probability vector: a value below 0 (or NaN), or a sum off 1 by
    more than :func:`rows_sum_to_one`'s tolerance (a row of values >= 0 summing to 1 holds none above 1 +
    tol, so two reductions tell it)."""
    tol = _row_sum_tolerance_of(xp, array, slack)
    return ~(xp.min(array, axis=-1) >= 0) | ~(xp.abs(xp.sum(array, axis=-1) - 1) <= tol)


def rows_sum_to_one(xp, array, name: str, hint: str = "", slack: float = 0.0) -> bool:
    """Rows along the last axis must sum to 1: within 1e-6 (float64) or 1e-3 (float32), plus
    the rounding a sum of K terms can carry (8 sqrt(K) eps), plus ``slack``. Returns whether the sums
    could be read (as :func:`no_nan`)."""
    sums = xp.sum(array, axis=-1)
    tol = _row_sum_tolerance_of(xp, array, slack)
    off = _array.concrete_bool(xp.any(xp.abs(sums - 1) > tol))
    if off:
        worst = float(xp.max(xp.abs(sums - 1)))
        raise fail(name, "rows along the class axis that sum to 1",
                   f"a row whose sum is off by {worst:.3g}", hint)
    return off is not None


def non_negative(xp, array, name: str):
    """``array``, after raising, naming ``name``, for a negative or infinite value (or NaN). A traced or lazy
    array, whose values no check can read, comes back with NaN where a value is negative or infinite
    (:func:`nan_where`): a negative weight under ``jax.jit`` or in a Dask graph gave a negative loss."""
    extremes = _extremes_without_nan(xp, array, name)
    if extremes is None:
        return array
    negative = _array.concrete_bool(extremes[0] < 0)
    if negative:
        raise fail(name, "non-negative finite values", f"a minimum of {float(extremes[0]):.6g}")
    infinite = _array.concrete_bool(xp.isinf(extremes[1]))
    if infinite:
        raise fail(name, "non-negative finite values", "inf")
    if negative is None or infinite is None:
        return nan_where(xp, array, (array < 0) | xp.isinf(array))
    return array


def labels_in_range(xp, labels, n_classes: int, ignore: int | None, name: str = "target") -> bool:
    """Raise, naming ``name``, for a label outside ``[0, n_classes)`` that is not ``ignore``. Returns
    whether the labels were read: False for a traced (JAX ``jit``) or lazy (Dask) array, whose values no
    check can read; the caller then makes a bad label's result NaN (:func:`bad_labels_nan`)."""
    if _array.size(labels) == 0:
        return True
    low, high = _array.extremes(xp, labels)
    if _array.concrete_bool((low >= 0) & (high < n_classes)):
        return True  # the common case in two reductions; the one that finds a bad label follows
    valid = valid_labels(labels, n_classes, ignore)
    bad = _array.concrete_bool(xp.any(~valid))
    if bad is None:
        return False
    if bad:
        bad = xp.where(valid, xp.zeros_like(labels), labels)
        bad_value = int(xp.max(bad)) if _array.concrete_bool(xp.any(bad > 0)) else int(xp.min(bad))
        allowed = f"class indices in [0, {n_classes})"
        if ignore is not None:
            allowed += f" or ignore_index={ignore}"
        raise fail(name, allowed, f"label {bad_value}")
    return True


def bad_labels_nan(xp, labels, n_classes: int, ignore: int | None, weight, dtype):
    """``weight`` (None: 1 per example) with NaN where a label is outside ``[0, n_classes)`` and not
    ``ignore``: what a call whose labels could not be read (:func:`labels_in_range` gave False) does
    with a bad one, a NaN loss rather than a silent value for another class (JAX's own gathers fill
    out-of-range indices with NaN too)."""
    ones = xp.ones(labels.shape, dtype=dtype, device=_array.device(labels))
    return xp.where(valid_labels(labels, n_classes, ignore), ones if weight is None else weight,
                    xp.full_like(ones, math.nan))


def valid_labels(labels, n_classes: int, ignore: int | None = None):
    """Where ``labels`` are class indices in ``[0, n_classes)`` or ``ignore`` (a boolean array)."""
    valid = (labels >= 0) & (labels < n_classes)
    return valid if ignore is None else valid | (labels == ignore)


def non_negative_number_or_list(value: Any, name: str) -> None:
    """Check a class/positive weight given as a Python number or list at construction time."""
    if isinstance(value, (str, bytes)) or value is None:
        raise fail(name, "a number or a list of non-negative numbers", repr(value))
    try:
        host = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, "a number or a list of non-negative numbers", repr(value)) from None
    if host.ndim > 1 or not np.all(np.isfinite(host)) or np.any(host < 0):
        raise fail(name, "a number or a 1-D list of non-negative finite numbers", repr(value))


def number_or_per_class(xp, value, name: str, input):
    """``value`` as a number, or a checked array of one value >= 0 per class (``input``'s last axis)."""
    if is_number(value):
        return value
    arr = _array.option_array(xp, value, name, input)
    if arr.ndim != 1 or arr.shape[0] != input.shape[-1]:
        raise fail(name, f"a number or shape ({input.shape[-1]},), one per class", f"shape {tuple(arr.shape)}")
    return non_negative(xp, arr, name)
