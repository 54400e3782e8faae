"""The array namespace of the inputs, and the few helpers some backends lack.

Every public entry point calls :func:`namespace` once; internal helpers take ``xp`` as an
argument. Nothing here names a framework but NumPy, the default (whose floating-point warnings
:func:`quiet` turns off): the differences between backends are asked of array-api-compat
(``is_dask_namespace``), never imported.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import array_namespace, is_dask_namespace, is_jax_namespace

from ._errors import fail


@functools.cache
def numpy_namespace():
    """array-api-compat's NumPy namespace, what ``array_namespace`` gives for NumPy arrays (asked on
    first use: its import loads numpy.testing, which ``import losskit`` need not pay for)."""
    return array_namespace(np.empty(0))


def quiet(xp):
    """A context in which NumPy's floating-point warnings are off, for the array-API path on NumPy: its
    infinities and NaNs are the documented limits (a target of +inf, an overflowing term taken by
    ``where``), which torch and JAX compute without a word; a no-op for other namespaces."""
    return np.errstate(all="ignore") if xp is numpy_namespace() or xp is np else contextlib.nullcontext()


__all__ = ["namespace", "is_array", "concrete_bool", "compute_dtype", "take_class", "one_hot"]


def is_array(value: Any) -> bool:
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, (int, float, bool))


def namespace(**arrays: Any):
    """Return ``(xp, arrays)``: the one namespace of the array arguments, lists made arrays.

    Python lists and tuples become arrays of the namespace the other arguments share (NumPy when
    none is an array). ``None`` values pass through. Arrays of two libraries raise.
    """
    if all(type(v) is np.ndarray or v is None for v in arrays.values()):
        return numpy_namespace(), arrays  # the common case without array-api-compat's search (small calls in a loop)
    present = {k: v for k, v in arrays.items() if is_array(v)}
    for k, v in present.items():
        if isinstance(v, np.ma.MaskedArray):  # its mask would be read by some paths and not others
            raise fail(k, "an array without a mask (losskit reads no NumPy mask: give masked values weight 0, "
                       "or pass ignore_index)", "a numpy.ma.MaskedArray")
    if present:
        try:
            xp = array_namespace(*present.values())
        except TypeError:
            kinds = ", ".join(f"{k}: {type(v).__module__}.{type(v).__name__}" for k, v in present.items())
            raise fail("arrays", "arrays of one library", kinds) from None
    else:
        xp = array_namespace(np.empty(0))
    device = array_api_compat.device(next(iter(present.values()))) if present else None
    converted = {}
    for k, v in arrays.items():
        if v is None or is_array(v):
            converted[k] = v
        elif isinstance(v, (list, tuple, np.ndarray)) or np.isscalar(v):
            try:
                host = np.asarray(v)
            except ValueError:  # NumPy's words for a ragged list name no argument
                raise fail(k, "a rectangular (nested) list of numbers", "a ragged list") from None
            if host.dtype.kind not in "biuf":
                raise fail(k, "numbers", f"{host.dtype.kind == 'O' and 'Python objects' or 'strings'} "
                           f"({type(v).__name__} of dtype {host.dtype})")
            converted[k] = xp.asarray(host, device=device) if device is not None else xp.asarray(host)
        else:
            raise fail(k, "an array or a (nested) list of numbers", type(v).__name__)
    if is_dask_namespace(xp):
        converted = {k: without_empty_blocks(v) for k, v in converted.items()}
    return xp, converted


def without_empty_blocks(array):
    """A Dask ``array`` without its blocks of no elements (a block filtered out entirely, an empty partition):
    Dask's max of such a block is an array of shape (1, 0), and every loss over a class axis met NumPy's raw
    "zero-size array to reduction operation maximum" (found in review). Unknown sizes are left as they are
    (the losses refuse them, saying how to learn them)."""
    chunks = getattr(array, "chunks", None)
    if not chunks or not any(0 in axis for axis in chunks) or any(c != c for axis in chunks for c in axis):
        return array
    return array.rechunk(tuple(tuple(c for c in axis if c) or (0,) for axis in chunks))


def concrete_bool(condition) -> bool | None:
    """``bool(condition)`` when it can be read cheaply, else ``None`` (Dask graph, JAX tracer)."""
    if isinstance(condition, (np.ndarray, np.generic, bool)):
        return bool(condition)
    try:
        xp = array_namespace(condition)
    except TypeError:
        return bool(condition)
    if is_dask_namespace(xp):
        return None  # reading would compute the whole graph
    try:
        return bool(condition)
    except Exception:  # a tracer under jit: no value to read
        return None


@functools.lru_cache(maxsize=512)
def isdtype(xp, dtype, kind) -> bool:
    """``xp.isdtype(dtype, kind)``, cached: asked several times on every call, and NumPy's own is a
    few microseconds of Python (a small call in a training loop is ~50)."""
    return xp.isdtype(dtype, kind)


@functools.lru_cache(maxsize=512)
def compute_dtype(xp, dtype):
    """float16 / bfloat16 are computed in float32; float32 and float64 as they are."""
    if xp.finfo(dtype).bits < 32:
        return xp.float32
    return dtype


def extremes(xp, array):
    """``(min, max)`` of a non-empty array, each 0-d; of a NumPy array, Python numbers, through the
    ufuncs' own reductions (array-api-compat's wrappers cost more than a small array's reduction)."""
    if type(array) is np.ndarray:
        return np.minimum.reduce(array, axis=None).item(), np.maximum.reduce(array, axis=None).item()
    return xp.min(array), xp.max(array)


def as_dtype(xp, array, dtype):
    """``array`` in ``dtype``: itself when it already is (``xp.astype`` copies by default)."""
    return array if array.dtype == dtype else xp.astype(array, dtype)


def refuse_past(xp, array, dtype, name: str, dtype_xp=None) -> None:
    """Raise, naming ``name``, for a finite value of ``array`` past ``dtype``'s largest, to which it is about to
    be cast: inf there, refused as "got inf" where a check reads it (after NumPy's overflow warning), a
    silent inf where none does. Only a float array of a wider dtype can hold one (int64's largest fits
    float32); a traced or lazy array's values are not read. ``dtype_xp``: ``dtype``'s namespace, if not
    ``array``'s."""
    if array.dtype == dtype or not isdtype(xp, array.dtype, "real floating"):  # (no cast: a call's usual weight)
        return
    largest = float((dtype_xp or xp).finfo(dtype).max)
    if float(xp.finfo(array.dtype).max) <= largest:
        return
    magnitude = xp.abs(array)
    past = (magnitude > largest) & (magnitude < float("inf"))
    if concrete_bool(xp.any(past)):
        worst = float(xp.max(xp.where(past, magnitude, xp.zeros_like(magnitude))))
        named = getattr(dtype, "__name__", None) or str(dtype)  # a NumPy or JAX scalar type: float32, not <class ...>
        raise fail(name, f"values that fit {named}, the dtype the loss is computed in (at most {largest:.3g} "
                   "in magnitude)", f"{worst:.6g}")


def as_index(xp, labels):
    """Integer labels in the backend's index dtype: int64 (torch gathers and compares no other
    for every integer dtype), int32 on JAX without x64, where int64 does not exist."""
    index = xp.int32 if is_jax_namespace(xp) and xp.asarray(0).dtype == xp.int32 else xp.int64
    if labels.dtype == index:
        return labels
    top = xp.iinfo(index).max
    wraps = isdtype(xp, labels.dtype, "unsigned integer") and xp.iinfo(labels.dtype).max > top
    labels = xp.astype(labels, index)
    if wraps:
        # a label past the index dtype is out of range: kept so, where the cast wrapped 2**64 - 100 to -100 (an
        # ignore_index, ignored without a word). The cast wraps exactly those to negatives, which an unsigned
        # label never is: compared after it, as torch compares no uint64
        labels = xp.where(labels < 0, xp.asarray(top, dtype=index, device=device(labels)), labels)
    return labels


def take_class(xp, values, labels):
    """``values[..., labels]`` along the last axis: the gather, or a one-hot sum where the
    backend lacks ``take_along_axis`` (Dask)."""
    if hasattr(xp, "take_along_axis") and not is_dask_namespace(xp):
        # int64 indices: some backends (torch) take no other integer dtype for a gather
        return xp.take_along_axis(values, as_index(xp, labels)[..., None], axis=-1)[..., 0]
    mask = one_hot(xp, labels, values.shape[-1], xp.bool)
    # where, not multiply: 0 * -inf would be NaN
    return xp.sum(xp.where(mask, values, xp.zeros_like(values)), axis=-1)


def take_per_label(xp, table, labels):
    """``table[labels]`` for a 1-d ``table`` (one value per class), in ``labels``' shape: the gather, or
    a one-hot sum on Dask, whose ``take`` of one index 0 reports the table's shape (and a reshape of
    it then raises)."""
    if is_dask_namespace(xp):
        return take_class(xp, xp.broadcast_to(table, (*labels.shape, table.shape[0])), labels)
    flat = xp.take(table, xp.reshape(as_index(xp, labels), (-1,)), axis=0)
    return xp.reshape(flat, tuple(labels.shape))


def one_hot(xp, labels, n_classes: int, dtype):
    classes = xp.arange(n_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
    mask = labels[..., None] == classes
    return mask if dtype == xp.bool else xp.astype(mask, dtype)


def size(array) -> int:
    """Number of elements (``math.prod`` of the shape; the array API has no ``size`` function)."""
    n = 1
    for s in array.shape:
        n *= s
    return n


def device(array):
    return array_api_compat.device(array)


def full_like_scalar(xp, value, like):
    """A 0-d array holding ``value`` in the dtype and on the device of ``like``."""
    return xp.asarray(value, dtype=like.dtype, device=array_api_compat.device(like))


def option_array(xp, value, name: str, like):
    """An option given as a number, list or array, as an array of ``like``'s namespace,
    working dtype and device. Options are hyper-parameters, so a NumPy array is taken as host
    constants like a list; an array of any other library must match the input's."""
    if is_array(value) and not isinstance(value, np.ndarray):
        try:
            same = array_namespace(value, like) is xp
        except TypeError:
            same = False
        if not same:
            raise fail(name, f"an array of the same library as the input ({type(like).__name__})",
                       f"{type(value).__module__}.{type(value).__name__}")
        refuse_past(xp, value, like.dtype, name)
        return xp.astype(value, like.dtype)
    try:
        host = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, "a number or a list of numbers", repr(value)) from None
    refuse_past(numpy_namespace(), host, like.dtype, name, dtype_xp=xp)
    return xp.asarray(host, dtype=like.dtype, device=array_api_compat.device(like))
