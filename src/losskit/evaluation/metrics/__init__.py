r"""Streaming, mergeable metric accumulators for ``losskit eval``: binary, multi-class, multi-label, regression
(a module each).

Each accumulator takes row batches with ``update(...)`` (arrays already checked by the reader:
finite, right shapes, labels in range, weights >= 0 or ``None`` for all 1), adds another one's
state with ``merge(other)`` (returns self), and reports with ``result()`` (a dict of plain
Python floats, lists and dicts; ``None`` where a metric is undefined, e.g. no weight). All keep
``rows`` (int) and ``weight_sum`` (float). Weights mean what scikit-learn's ``sample_weight``
means: every metric is a weighted average over examples, and each is tested against the
scikit-learn function it is named after.

``pred_kind`` (classifiers) is ``"logits"`` or ``"probs"``. With logits, probabilities are the
sigmoid / softmax of them and log-losses come straight from the logits (log-sigmoid,
log-softmax: no overflow for any finite logit); a prediction is positive when the logit is > 0.
With probs, the log-loss clips the probability of the true class into ``[eps, 1 - eps]``,
``eps = np.finfo(np.float64).eps``, as ``sklearn.metrics.log_loss`` (1.9) does, rows are not
renormalised (scikit-learn >= 1.5 only warns when they do not sum to 1) and a prediction is
positive when ``p > 0.5``.

Design note: the state is float64 sums only, so it pickles small (it travels between Dask
workers) and merges by addition: a merge is exact for counts and, for means, as exact as the
sum. Two things cannot be plain sums: the spread of the targets behind :math:`R^2` is kept per
batch by a shifted two-pass mean and :math:`M_2` and combined with Chan et al.'s parallel
formula (``sum y^2 - W mean^2`` would cancel every digit when ``|mean| >> std``), and ROC AUC is
the :class:`~.auc.RankAUC` accumulator (exact under a row limit, binned with a bound beyond).
Speed: every update makes a few passes over the batch with NumPy ufuncs, writing into reused
buffers, and histograms grow by ``np.add.at`` in place (``np.bincount`` allocates a fresh array
per batch, which costs more than the counting for a large histogram); no Python loop over rows.
Weighted sums and row sums use ``np.einsum`` (several times faster than ``sum(axis=1)`` on narrow
rows) rather than BLAS: BLAS threads would oversubscribe the cores of a Dask worker that already
runs one task per core.
"""

from .binary import BinaryMetrics
from .multiclass import MulticlassMetrics
from .multilabel import MultilabelMetrics, _auc_bins_log2
from .regression import RegressionMetrics

__all__ = ["BinaryMetrics", "MulticlassMetrics", "MultilabelMetrics", "RegressionMetrics", "_auc_bins_log2"]
