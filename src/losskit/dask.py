"""Dask helpers: score predictions larger than one machine's memory, chunk by chunk.

Import it explicitly (``import losskit.dask``); ``import losskit`` never imports Dask.

The core losses already run lazily on Dask arrays (each is a chunk-wise map and a tree
reduction). What a user scoring many files or partitions needs beyond that is a mean whose
parts combine exactly: :func:`score` returns the weighted mean together with its numerator and
denominator, computed in one pass over the data.
"""

from __future__ import annotations

import dask

__all__ = ["score"]


def score(loss, predictions, target, *, weight=None):
    r"""``(mean, total, weight_sum)`` of ``loss`` over Dask (or any) arrays, in one pass.

    ``total`` is :math:`\sum_i w_i l_i`, ``weight_sum`` is :math:`\sum_i w_i` (``weight`` times
    class weights, ignored labels 0; the example count when unweighted) and ``mean`` is their
    ratio (0 when ``weight_sum`` is 0), as Python floats. Results of several calls combine exactly:
    ``sum(totals) / sum(weight_sums)``.

    ``loss`` is a :class:`losskit.Loss` (e.g. ``losskit.SoftmaxCrossEntropy(ignore_index=-100)``);
    shapes as that loss. Value checks (label range, probabilities) are skipped for Dask input,
    since reading values would compute the graph; shapes and dtypes are still checked.
    """
    total, weight_sum = loss.sum_and_weight(predictions, target, weight=weight)
    total, weight_sum = (float(v) for v in dask.compute(total, weight_sum))
    return (total / weight_sum if weight_sum else 0.0), total, weight_sum
