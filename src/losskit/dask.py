"""Dask helpers: score predictions larger than one machine's memory, chunk by chunk.

Import it explicitly (``import losskit.dask``); ``import losskit`` never imports Dask.

The core losses already run lazily on Dask arrays (each is a chunk-wise map and a tree
reduction), but lazily they cannot check values (a label out of range, a probability above 1):
reading a value would compute the graph, so the core skips those checks for Dask input. What a
user scoring many files or partitions needs beyond that is:

* the checks back: :func:`partial_sums` runs the core eagerly on each block (NumPy inside the
  worker), so every value check applies and raises :class:`~losskit.LossInputError` from the
  worker that read the bad value;
* a mean whose parts combine exactly: :func:`score` returns the weighted mean together with its
  numerator and denominator.

Design note: one task per block computes ``(sum_i w_i l_i, sum_i w_i)`` of that block; a tree
reduction adds the pairs. The alternative, the core's lazy expression with a separate lazy
check of the labels, would have duplicated every loss's value checks here.
"""

from __future__ import annotations

import dataclasses
import math

import dask
import dask.array as da
import numpy as np

from ._checks import fail
from ._errors import argument_renamed
from .losses.base import require_loss_object

__all__ = ["partial_sums", "score"]

_LETTERS = "abcdefghijklmnopqrstuvwxy"


# the core names a classifier's input `logits` (a probability loss's `probs`); these functions' argument is
# `predictions` (found in review)
@argument_renamed(logits="predictions", probs="predictions")
def partial_sums(loss, predictions, target, *, weight=None):
    r"""Lazy ``[sum_i w_i l_i, sum_i w_i]`` of ``loss`` over Dask arrays, a float64 Dask array of shape (2,).

    ``w_i`` is the full example weight (``weight`` times class weights, 0 for ignored labels, 1
    when unweighted), as :meth:`losskit.Loss.sum_and_weight`. Each block is scored by the core
    on NumPy inside its task, with all the core's value checks; the pairs are added by a tree
    reduction, so no task holds more than one block of the data. Compute several of these in one
    ``dask.compute`` call to score several losses in one pass over the data.

    Shapes as ``loss``: ``predictions [...]``, ``target`` of the predictions' shape or of the batch
    shape (integer labels), ``weight`` of the batch shape. The axis one example spans (the class
    axis, for example) is rechunked to a single chunk, the other axes' chunks made smaller so that no
    block grows past the largest block given; the other axes of the three arrays are chunked alike
    (the predictions' chunks). Any other array NumPy can read (a torch CPU tensor, JAX, a list) is
    wrapped, and an option given as a Dask array (a class weight) is computed once, on the host.
    """
    require_loss_object(loss)  # (a class, a name or a function form failed inside with a TypeError)
    loss = _options_on_the_host(loss)
    predictions, target = _as_dask(predictions, "predictions"), _as_dask(target, "target")
    weight = _as_dask(weight, "weight")
    loss.sum_and_weight(predictions, target, weight=weight)  # shapes and dtypes, lazily: raises now
    ndim = predictions.ndim
    axis = loss.example_axis(ndim)  # the axis one example spans, or None
    if axis is not None:
        predictions = _whole(predictions, axis)
    elif ndim and _per_label_option(loss):  # a pos_weight [K] lines up with the whole last axis
        predictions = _whole(predictions, ndim - 1)
    index = _LETTERS[:ndim]
    batch_index = index if axis is None else index.replace(index[axis], "")
    batch_chunks = tuple(c for i, c in enumerate(predictions.chunks) if i != axis)
    dense = target.ndim == ndim
    target = target.rechunk(predictions.chunks if dense else batch_chunks)
    args = [predictions, index, target, index if dense else batch_index]
    if weight is not None:
        args += [weight.rechunk(batch_chunks), batch_index]
    parts = da.blockwise(_block_parts, batch_index + "z", *args, new_axes={"z": 2},
                         adjust_chunks={letter: 1 for letter in batch_index}, concatenate=True,
                         dtype=np.float64, meta=np.empty((0,) * (len(batch_index) + 1)),
                         loss=loss, batch_ndim=len(batch_index), weighted=weight is not None)
    return parts.sum(axis=tuple(range(len(batch_index))))


def _as_dask(array, name: str):
    """``array`` as a Dask array: a Dask array as it is, any array NumPy can read (NumPy, a torch CPU tensor,
    JAX, a list) wrapped; else a LossInputError naming ``name`` (``da.asarray`` of a torch tensor raised
    NumPy's "Cannot interpret 'torch.float32' as a data type")."""
    if array is None or isinstance(array, da.Array):
        return array
    try:
        host = np.asarray(array)
    except (TypeError, ValueError, RuntimeError) as error:
        raise fail(name, "a Dask array, or an array NumPy can read (NumPy, a torch CPU tensor, JAX, a list)",
                   f"{type(array).__module__.partition('.')[0]}.{type(array).__name__} ({error})") from None
    return da.from_array(host, chunks=host.shape or ())


def _options_on_the_host(loss):
    """``loss`` with any option given as a Dask array (a class weight) as NumPy: each block is scored on NumPy,
    where a Dask option was refused as an array of another library."""
    options = getattr(loss, "options", None)
    if not dataclasses.is_dataclass(options):
        return loss
    lazy = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if isinstance(getattr(options, f.name), da.Array)}
    return loss.replace(**{name: np.asarray(value.compute()) for name, value in lazy.items()}) if lazy else loss


def _whole(predictions, axis: int):
    """``predictions`` with ``axis`` in one chunk. The other axes' chunks shrink so that no block holds more than
    the largest block given (a task reads one block; merging the class axis alone made each block as many
    times larger as the axis had chunks)."""
    if len(predictions.chunks[axis]) == 1:
        return predictions
    largest = math.prod(max(c, default=0) for c in predictions.chunks) * predictions.dtype.itemsize
    others = {i: "auto" for i in range(predictions.ndim) if i != axis}
    return predictions.rechunk({axis: -1, **others}, block_size_limit=max(largest, 1))


def _per_label_option(loss) -> bool:
    """Whether one of ``loss``'s options holds one value per label or class (an array, a list)."""
    options = getattr(loss, "options", None)
    return dataclasses.is_dataclass(options) and any(np.ndim(getattr(options, f.name)) > 0
                                                     for f in dataclasses.fields(options))


def _block_parts(predictions, target, *rest, loss, batch_ndim: int, weighted: bool):
    weight = rest[0] if weighted else None
    total, weight_sum = loss.sum_and_weight(predictions, target, weight=weight)
    return np.array([float(total), float(weight_sum)]).reshape((1,) * batch_ndim + (2,))


@argument_renamed(logits="predictions", probs="predictions")
def score(loss, predictions, target, *, weight=None):
    r"""``(mean, total, weight_sum)`` of ``loss`` over Dask (or any) arrays, in one pass.

    ``total`` is :math:`\sum_i w_i l_i`, ``weight_sum`` is :math:`\sum_i w_i` (``weight`` times
    class weights, ignored labels 0; the example count when unweighted) and ``mean`` is their
    ratio (0 when ``weight_sum`` is 0, as the core's all-ignored rule), as Python floats. Results
    of several calls combine exactly: ``sum(totals) / sum(weight_sums)``; a mean of means does not.

    ``loss`` is a :class:`losskit.Loss` (e.g. ``losskit.SoftmaxCrossEntropy(ignore_index=-100)``);
    shapes as :func:`partial_sums`, which does the work; a bad value in any block (a label out of
    range, a probability outside [0, 1]) raises :class:`~losskit.LossInputError`. Runs on the
    active ``distributed.Client`` if there is one, else on Dask's default scheduler.

    >>> import dask.array as da, numpy as np, losskit as lk, losskit.dask
    >>> logits = da.from_array(np.zeros((4, 2)), chunks=2)
    >>> mean, total, weight_sum = losskit.dask.score(lk.SoftmaxCrossEntropy(), logits, np.array([0, 1, 1, 0]))
    >>> round(mean, 6), weight_sum
    (0.693147, 4.0)
    """
    (parts,) = dask.compute(partial_sums(loss, predictions, target, weight=weight))
    total, weight_sum = float(parts[0]), float(parts[1])
    return (total / weight_sum if weight_sum else 0.0), total, weight_sum
