r"""Fused linear + cross-entropy that never materialises the N x V logits.

For hidden states ``h [N, D]``, a classifier ``C [V, D]`` (and bias ``b [V]``) and labels ``y``:

.. math:: z = h C^\top + b, \quad s = c \tanh(z / c) \text{ (softcap, optional)},

.. math:: l_i = \mathrm{lse}(s_i) - (1 - a) s_{i y_i} - \frac{a}{V} \sum_k s_{ik}
          + \zeta\, \mathrm{lse}(s_i)^2

Design note: rows are processed in chunks. The call is first resolved like any softmax CE call
(:func:`~losskit.losses.categorical.label_target` for labels, ignore_index and class weights;
:func:`losskit.reduction.scale` for the reduction), so the reduction's denominator is known before
the first chunk. Each chunk's logits are turned into the loss and ``d l / d z`` (times the
per-example scale) by the same compiled kernel as :class:`~losskit.SoftmaxCrossEntropy` on NumPy
(the chunk buffer becomes its own gradient), or by the array-API expression elsewhere, and folded
at once into ``grad_hidden`` (``G C``) and ``grad_classifier`` (``+= G^T h``): peak extra memory
is one ``chunk x V`` buffer, never ``N x V``. ``grad_classifier`` is accumulated in place
(``addmm_`` on torch; on NumPy block by block, each block's product in cache). Recomputing the
logits in backward (Apple's cut-cross-entropy) would save the chunk buffer but double the matmuls,
which are the cost on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .. import _array, _checks
from .. import reduction as _reduction
from ..activations import log_normalizer_xp, shifted_logits_xp
from ._half import computes_half_in_float32
from .binary import bce_logits_terms, smoothed_targets
from .categorical import label_target, mean_surprisal
from .elementwise import IN_DOMAIN
from .registry import named_keywords

__all__ = ["linear_cross_entropy", "linear_cross_entropy_value_and_grad",
           "linear_binary_cross_entropy", "linear_binary_cross_entropy_value_and_grad",
           "LinearCEOptions"]

#: default chunk: rows such that one chunk of logits holds about 2^25 numbers (128 MiB in float32):
#: big enough for efficient gemms (261 rows at V = 128256), small next to N x V
CHUNK_ELEMENTS = 1 << 25


@dataclass(frozen=True, eq=False)
class LinearCEOptions:
    """The options of the linear (and vocab-parallel) cross-entropy, checked once, for every entry."""

    chunk_size: int | None = None
    ignore_index: int | None = None
    label_smoothing: float = 0.0
    class_weight: Any = None
    z_loss: float = 0.0
    softcap: float | None = None
    reduction: str = "mean"

    def __post_init__(self):
        set_ = object.__setattr__
        if self.chunk_size is not None and (not _checks.is_integer(self.chunk_size) or self.chunk_size < 1):
            raise _checks.fail("chunk_size", "None or a positive int (rows per chunk)", repr(self.chunk_size))
        set_(self, "ignore_index", _checks.ignore_index(self.ignore_index))
        set_(self, "label_smoothing", _checks.label_smoothing(self.label_smoothing))
        if not _checks.is_number(self.z_loss) or not 0 <= float(self.z_loss) < float("inf"):
            raise _checks.fail("z_loss", "a finite scale >= 0", repr(self.z_loss))
        set_(self, "z_loss", float(self.z_loss))
        if self.softcap is not None and (not _checks.is_number(self.softcap) or not 0 < self.softcap < float("inf")):
            raise _checks.fail("softcap", "None or a positive finite number", repr(self.softcap))
        set_(self, "reduction", _checks.reduction(self.reduction))

    def rows(self, n_rows: int, n_vocab: int) -> int:
        if self.chunk_size is None:
            return max(1, min(n_rows, CHUNK_ELEMENTS // max(n_vocab, 1)))
        return min(int(self.chunk_size), max(n_rows, 1))


#: ``accumulate_at_b`` on NumPy: rows of ``a @ b`` per block, a block's product 2^21 numbers (8 MiB in
#: float32). One post-training chunk (384 x 128256 by 384 x 1024), ``python -m benchmarks.accumulate_block``,
#: medians 2026-12-03: blocks of 2^19 0.81 s, 2^20 0.66 s, 2^21 0.68 s, 2^23 0.68 s, SciPy's sgemm with
#: beta = 1 0.67 s, a fresh ``z.T @ h`` (no accumulation) 0.91 s
ACCUMULATE_BLOCK = 1 << 21


def accumulate_at_b(xp, acc, a, b):
    """``acc + a @ b``, in place where the library can (see the module note)."""
    if a.shape[-1] == 0:  # an empty inner dimension (a chunk of no row) adds nothing: no pass over acc
        return acc
    if hasattr(acc, "addmm_"):  # torch: one gemm with beta = 1
        return acc.addmm_(a, b)
    if type(acc).__module__ == "numpy":
        # NumPy has no gemm with beta = 1: ``acc += a @ b`` would hold a second [V, D] array (501 MiB
        # at V = 128256, D = 1024). Block by block (see ACCUMULATE_BLOCK) it costs about what SciPy's
        # sgemm with beta = 1 does
        return accumulate_in_blocks(acc, a, b, max(1, ACCUMULATE_BLOCK // max(acc.shape[1], 1)))
    return acc + a @ b


def accumulate_in_blocks(acc, a, b, rows: int):
    """NumPy: ``acc += a @ b`` in place, ``rows`` rows of the product at a time (one block of scratch)."""
    import numpy as np

    block = np.empty((min(rows, acc.shape[0]), acc.shape[1]), dtype=acc.dtype)
    for start in range(0, acc.shape[0], rows):
        stop = min(start + rows, acc.shape[0])
        product = block[: stop - start]
        np.matmul(a[start:stop], b, out=product)
        acc[start:stop] += product
    return acc


def check_layer(xp, hidden, classifier, bias, names=("hidden", "classifier", "bias")) -> None:
    """Check one output layer's arrays, ``hidden [N, D]``, ``classifier [V, D]``, ``bias [V]`` or None,
    naming them by ``names`` in the messages."""
    h_name, c_name, b_name = names
    for name, array in ((h_name, hidden), (c_name, classifier)):
        _checks.floating(xp, array, name)
        if array.ndim != 2:
            raise _checks.fail(name, "a 2-D array", f"shape {tuple(array.shape)}")
    if hidden.shape[1] != classifier.shape[1]:
        raise _checks.fail(c_name, f"shape (V, {hidden.shape[1]}) to match {h_name}'s {hidden.shape[1]} "
                           "features", f"shape {tuple(classifier.shape)}")
    if hidden.dtype != classifier.dtype:
        raise _checks.fail(c_name, f"dtype {hidden.dtype} ({h_name}'s)", f"dtype {classifier.dtype}")
    if bias is not None:
        check_bias(xp, bias, classifier.shape[0], hidden.dtype, b_name, h_name)


def check_bias(xp, bias, n_vocab: int, dtype, name: str = "bias", hidden_name: str = "hidden") -> None:
    """The one rule of every fused linear loss's bias: shape ``[V]``, in the hidden states' dtype or an integer
    array (cast exactly); a floating bias of another dtype is refused (a wider bias promoted the logits on
    some paths and not others, and torch's gemm refused it; a narrower one was cast silently by some)."""
    if tuple(bias.shape) != (n_vocab,):
        raise _checks.fail(name, f"shape ({n_vocab},)", f"shape {tuple(bias.shape)}")
    if not _array.isdtype(xp, bias.dtype, ("real floating", "integral")):
        raise _checks.fail(name, f"a real-valued array (of dtype {dtype}, {hidden_name}'s, or integers)",
                           f"dtype {bias.dtype}")
    if _array.isdtype(xp, bias.dtype, "real floating") and bias.dtype != dtype:
        raise _checks.fail(name, f"dtype {dtype} ({hidden_name}'s) or an integer array", f"dtype {bias.dtype}")


def _arrays(hidden, classifier, target, bias, weight):
    """The namespace and the checked arrays of a linear loss call."""
    _checks.given(hidden=hidden, classifier=classifier, target=target)
    xp, arrays = _array.namespace(hidden=hidden, classifier=classifier, target=target, bias=bias, weight=weight)
    hidden, classifier, bias = arrays["hidden"], arrays["classifier"], arrays["bias"]
    check_layer(xp, hidden, classifier, bias)
    bias = None if bias is None else xp.astype(bias, hidden.dtype)  # an integer bias promoted the logits
    weight = arrays["weight"]
    if weight is not None:
        _checks.same_shape("weight", weight, "one value per row of hidden", (hidden.shape[0],))
        if not _array.isdtype(xp, weight.dtype, ("real floating", "integral")):  # text weights were parsed
            raise _checks.fail("weight", "a real-valued array", f"dtype {weight.dtype}")
        weight = xp.astype(weight, hidden.dtype)
        weight = _checks.non_negative(xp, weight, "weight")
    return xp, hidden, classifier, arrays["target"], bias, weight


def check_scalar_reduction(reduction) -> None:
    """The framework forms of a fused linear loss (torch, JAX) take ``"mean"`` or ``"sum"`` (or none: the loss
    has no reduction option): their backward scales the gradients of the sum by one upstream value, and an
    ``[N]`` one gave a broadcasting error or, where N equals D, a wrong gradient."""
    if reduction is not None and reduction not in ("mean", "sum"):
        raise _checks.fail("reduction", '"mean" or "sum" (the backward scales the gradients of the sum by one '
                           'upstream value)', repr(reduction), "for per-token values take linear_logprobs")


def _logits(xp, h, classifier, bias, softcap):
    z = h @ xp.matrix_transpose(classifier)
    if bias is not None:
        z = z + bias
    if softcap is None or softcap > float(xp.finfo(z.dtype).max):  # past the dtype: no cap (c * tanh(z / c) = z)
        return z, None
    t = xp.tanh(z / softcap)
    return softcap * t, t


def _scale(xp, w, n_rows, options, normalizer, like):
    scale, _ = _reduction.scale(xp, w, n_rows, options.reduction, normalizer, like)
    return xp.broadcast_to(scale, (n_rows,))


@computes_half_in_float32
def linear_cross_entropy_value_and_grad(hidden, classifier, target, *, bias=None, weight=None, normalizer=None,
                                        ignore_index=None, **options):
    r"""``(value, (grad_hidden, grad_classifier, grad_bias))`` of :func:`linear_cross_entropy`, in one sweep.

    Shapes: ``hidden [N, D]``, ``classifier [V, D]``, ``target [N]`` integer, ``bias [V]`` or None,
    ``weight [N]`` per example, ``class_weight [V]``. ``grad_bias`` is None without a bias.
    Gradients are of the reduced value (for ``"none"``, of ``sum(none)``), as everywhere in losskit.
    """
    _checks.known_options(options, [f.name for f in dataclasses.fields(LinearCEOptions)], "linear_cross_entropy")
    # (ignore_index in the signature: a loss of class ids says so, and its default, to losskit.jax.fused_linear)
    opts = LinearCEOptions(ignore_index=ignore_index, **options)
    xp, hidden, classifier, target, bias, weight = _arrays(hidden, classifier, target, bias, weight)
    normalizer = _checks.normalizer(normalizer, xp, _array.compute_dtype(xp, hidden.dtype))
    n_rows, n_vocab = hidden.shape[0], classifier.shape[0]
    if not _array.isdtype(xp, target.dtype, "integral") or tuple(target.shape) != (n_rows,):
        raise _checks.fail("target", f"integer class indices of shape ({n_rows},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    if n_vocab == 0:
        raise _checks.fail("classifier", "at least one class (row)", f"shape {tuple(classifier.shape)}")
    target = _array.as_index(xp, target)  # uint8 / int8 ids compared with -100 or V would wrap
    read = _checks.labels_in_range(xp, target, n_vocab, opts.ignore_index)
    cw = None
    if opts.class_weight is not None:
        cw = _array.option_array(xp, opts.class_weight, "class_weight", hidden)
        if tuple(cw.shape) != (n_vocab,):
            raise _checks.fail("class_weight", f"shape ({n_vocab},)", f"shape {tuple(cw.shape)}")
        cw = _checks.non_negative(xp, cw, "class_weight")
    resolved = label_target(xp, target, cw, opts.ignore_index, hidden.dtype, None if read else n_vocab)
    w = resolved.weight if weight is None else (weight if resolved.weight is None else weight * resolved.weight)
    scale = _scale(xp, w, n_rows, opts, normalizer, hidden)
    rows = opts.rows(n_rows, n_vocab)
    a, z_loss, softcap = opts.label_smoothing, opts.z_loss, opts.softcap
    if not z_loss and softcap is None:
        result = _host_sweep(hidden, classifier, bias, resolved.labels, scale, a, rows, opts.reduction)
        if result is not None:
            return result
    classes = xp.arange(n_vocab, dtype=resolved.labels.dtype, device=_array.device(hidden))

    def chunk_terms(start, stop, h):
        """Per-example loss of rows start:stop and ``d loss / d logits`` (before the scale)."""
        y = resolved.labels[start:stop]
        s, t = _logits(xp, h, classifier, bias, softcap)
        shifted, m = shifted_logits_xp(xp, s)
        log_norm = log_normalizer_xp(xp, shifted)
        onehot = y[:, None] == classes
        picked_shifted = xp.sum(xp.where(onehot, shifted, xp.zeros_like(s)), axis=-1)
        # lse - z_y written as log_norm - (z_y - m): a sure row keeps its tiny loss (no lse - z_y rounding)
        loss = log_norm[..., 0] - picked_shifted
        if a:  # (1 - a) (lse - z_y) + a (lse - mean z), the latter finite for rows spanning the dtype
            loss = (1 - a) * loss + a * mean_surprisal(xp, s, shifted - log_norm)
        lse = (m + log_norm)[..., 0]
        if z_loss:
            loss = loss + z_loss * lse * lse
        p = xp.exp(shifted - log_norm)
        g = p * (1 + 2 * z_loss * lse)[:, None] if z_loss else p
        g = xp.where(onehot, g - (1 - a + a / n_vocab), g - a / n_vocab)
        if t is not None:
            g = g * (1 - t * t)  # d softcap(z) / dz
        return loss, g

    return _sweep(xp, hidden, classifier, bias, rows, scale, w, opts.reduction, chunk_terms)


def _sweep(xp, hidden, classifier, bias, rows, scale, w, reduction, chunk_terms):
    """The chunked sweep both linear losses share: per chunk, the loss and ``d loss / d logits``
    from ``chunk_terms``, scaled by the reduction, folded into the three gradients."""
    grad_hidden_parts, losses = [], []
    grad_classifier = xp.zeros(classifier.shape, dtype=classifier.dtype, device=_array.device(classifier))
    grad_bias = None if bias is None else xp.zeros(bias.shape, dtype=bias.dtype, device=_array.device(bias))
    for start in range(0, hidden.shape[0], rows):
        stop = min(start + rows, hidden.shape[0])
        chunk_scale = scale[start:stop, None]
        # an ignored or weight-0 row reaches no output: its hidden state is taken as 0 before the logits, so
        # that a NaN or inf there adds nothing to g^T h, nor (autodiff through this forward: jax.grad, torch
        # autograd of the core) to the classifier's gradient through the logits
        h = xp.where(chunk_scale == 0, xp.zeros_like(hidden[start:stop, ...]), hidden[start:stop, ...])
        loss, g = chunk_terms(start, stop, h)
        losses.append(loss)
        g = xp.where(chunk_scale == 0, xp.zeros_like(g), g * chunk_scale)  # weight 0 adds 0, even if inf
        grad_hidden_parts.append(g @ classifier)
        grad_classifier = accumulate_at_b(xp, grad_classifier, xp.matrix_transpose(g), h)
        if grad_bias is not None:
            grad_bias = grad_bias + xp.sum(g, axis=0)
    if not losses:  # an empty batch: value 0 (or no values), gradients 0
        return _reduction.combine(xp, xp.zeros((0,), dtype=hidden.dtype, device=_array.device(hidden)), w,
                                  scale, reduction), (xp.zeros_like(hidden), grad_classifier, grad_bias)
    per_example = xp.concat(losses) if len(losses) > 1 else losses[0]
    value = _reduction.combine(xp, per_example, w, scale, reduction)
    grad_hidden = xp.concat(grad_hidden_parts) if len(grad_hidden_parts) > 1 else grad_hidden_parts[0]
    return value, (grad_hidden, grad_classifier, grad_bias)


def host_arrays(*arrays) -> bool:
    """Whether the compiled host sweep takes these arrays: NumPy float32/float64 (None skipped), numba there."""
    import numpy as np

    from .. import fused

    return fused.available() and all(isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
                                     for x in arrays if x is not None)


class KeptRows:
    """The host sweeps' rows that reach the gemm: those of scale != 0. A row of scale 0 (an ignored
    target, or weight 0) adds 0 to the loss and to every gradient, even with a non-finite logit, so
    its logits are never computed. ``take`` a per-row array to the kept rows; ``spread`` a kept-row
    result back to all rows, 0 at the others."""

    def __init__(self, scale):
        import numpy as np

        self.n_rows = scale.shape[0]
        self.index = None if scale.all() else np.flatnonzero(scale)
        self.count = self.n_rows if self.index is None else self.index.shape[0]

    def take(self, array):
        return array if self.index is None else array[self.index]

    def spread(self, values):
        import numpy as np

        if self.index is None:
            return values
        out = np.zeros((self.n_rows, *values.shape[1:]), dtype=values.dtype)
        out[self.index] = values
        return out


def host_sweep(hidden, classifier, bias, rows, fill):
    """NumPy: each chunk's logits go into one ``rows x V`` buffer, ``fill(start, stop, z, flags)`` turns
    that buffer into the scaled ``d loss / d logits`` in place (a compiled kernel; it keeps its own
    losses), then two gemms; ``grad_classifier`` accumulated in place. Returns ``(grad_hidden,
    grad_classifier, grad_bias)``, or None when ``fill`` flagged a row (a non-finite logit: the
    array-API sweep then gives the exact limits)."""
    import numpy as np

    from ..fused import threads

    threads.start()  # numba's threads, to sleep soon when idle (before the first parallel kernel of ``fill``)
    n_rows, n_vocab = hidden.shape[0], classifier.shape[0]
    rows = min(rows, max(n_rows, 1))
    buffer = np.empty((min(rows, n_rows), n_vocab), dtype=hidden.dtype)
    grad_hidden = np.empty_like(hidden)
    grad_classifier = np.zeros_like(classifier)
    grad_bias = None if bias is None else np.zeros_like(bias)
    flags = np.zeros(rows, dtype=np.uint8)
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        h, z = hidden[start:stop], buffer[: stop - start]
        np.matmul(h, classifier.T, out=z)
        if bias is not None:
            z += bias
        fill(start, stop, z, flags[: stop - start])
        if flags.any():
            return None
        np.matmul(z, classifier, out=grad_hidden[start:stop])
        accumulate_at_b(np, grad_classifier, z.T, h)
        if grad_bias is not None:
            grad_bias += z.sum(axis=0)
    return grad_hidden, grad_classifier, grad_bias


def host_value(scaled_loss, reduction, dtype):
    """The reduced value from the kernels' float64 ``scale * l`` per row."""
    import numpy as np

    return scaled_loss.astype(dtype) if reduction == "none" else np.asarray(scaled_loss.sum(), dtype=dtype)[()]


def _host_sweep(hidden, classifier, bias, labels, scale, smoothing, rows, reduction):
    """NumPy: :func:`host_sweep` with the softmax CE kernel (the chunk buffer becomes its own
    gradient). None when the arrays are not NumPy float32/float64, numba is missing, or a chunk
    flagged a row."""
    import numpy as np

    if not host_arrays(hidden, classifier, bias):
        return None
    from ..fused.kernels import softmax_ce_rows

    labels = np.ascontiguousarray(labels, dtype=np.int64)
    scale = np.ascontiguousarray(scale, dtype=hidden.dtype)
    kept = KeptRows(scale)
    labels, scale = kept.take(labels), kept.take(scale)
    scaled_loss = np.zeros(kept.count)

    def fill(start, stop, z, flags):
        softmax_ce_rows(z, labels[start:stop], scale[start:stop], smoothing, scaled_loss[start:stop], z, True, flags)

    grads = host_sweep(kept.take(hidden), classifier, bias, rows, fill)
    if grads is None:
        return None
    scaled_loss, grads = kept.spread(scaled_loss), (kept.spread(grads[0]), *grads[1:])
    return host_value(scaled_loss, reduction, hidden.dtype), grads


@computes_half_in_float32
def linear_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, normalizer=None, **options):
    r"""Softmax cross-entropy of ``hidden @ classifier.T (+ bias)`` without the N x V logits in memory.

    .. math:: l_i = \mathrm{lse}(s_i) - (1 - a) s_{i y_i} - \frac{a}{V}\sum_k s_{ik}
              + \zeta\,\mathrm{lse}(s_i)^2, \quad s = c \tanh((h C^\top + b) / c)

    Shapes: ``hidden [N, D]``, ``classifier [V, D]``, ``target [N]`` integer, ``bias [V]``,
    ``weight [N]`` per example. Options (:class:`LinearCEOptions`) as
    :func:`losskit.softmax_cross_entropy` (``class_weight [V]``, ``ignore_index``,
    ``label_smoothing`` a/V, ``reduction``; ``normalizer``) plus ``z_loss`` (scale of ``lse^2``),
    ``softcap`` (c, or None) and ``chunk_size`` (rows per chunk; default keeps a chunk of logits
    near 2^25 numbers). Equals ``softmax_cross_entropy(hidden @ classifier.T + bias, target, ...)``
    for ``z_loss=0``, ``softcap=None``. An empty batch gives 0 (``"none"``: an empty array).

    >>> import numpy as np, losskit as lk
    >>> h, c = np.ones((2, 3)), np.zeros((4, 3))
    >>> round(float(lk.linear_cross_entropy(h, c, np.array([0, 3]))), 6)  # uniform over 4: log 4
    1.386294
    """
    return linear_cross_entropy_value_and_grad(hidden, classifier, target, bias=bias, weight=weight,
                                               normalizer=normalizer, **options)[0]


@computes_half_in_float32
@named_keywords
def linear_binary_cross_entropy_value_and_grad(hidden, classifier, target, *, bias=None, weight=None,
                                               pos_weight=None, label_smoothing=0.0, reduction="mean",
                                               normalizer=None, chunk_size=None):
    r"""``(value, (grad_hidden, grad_classifier, grad_bias))`` of :func:`linear_binary_cross_entropy`."""
    opts = LinearCEOptions(chunk_size=chunk_size, label_smoothing=label_smoothing, reduction=reduction)
    xp, hidden, classifier, target, bias, weight = _arrays(hidden, classifier, target, bias, weight)
    normalizer = _checks.normalizer(normalizer, xp, _array.compute_dtype(xp, hidden.dtype))
    n_rows, n_labels = hidden.shape[0], classifier.shape[0]
    _checks.same_shape("target", target, "one row of labels per row of hidden", (n_rows, n_labels))
    target = xp.astype(target, hidden.dtype)
    if not _checks.in_unit_interval(xp, target, "target"):  # traced or lazy: NaN outside [0, 1]
        target = _checks.nan_where(xp, target, ~IN_DOMAIN["binary"](target))
    pw = None
    if pos_weight is not None:
        pw = _array.option_array(xp, pos_weight, "pos_weight", hidden)
        if pw.ndim > 1 or (pw.ndim == 1 and pw.shape[0] != n_labels):
            raise _checks.fail("pos_weight", f"a number or shape ({n_labels},)", f"shape {tuple(pw.shape)}")
        pw = _checks.non_negative(xp, pw, "pos_weight")
    scale = _scale(xp, weight, n_rows, opts, normalizer, hidden)
    a = opts.label_smoothing

    def chunk_terms(start, stop, h):
        z, _ = _logits(xp, h, classifier, bias, None)
        y = target[start:stop, ...]
        y, neg = smoothed_targets(y, a)
        loss, g, _ = bce_logits_terms(xp, z, y, pw, 1, neg=neg)
        return xp.sum(loss, axis=-1), g

    return _sweep(xp, hidden, classifier, bias, opts.rows(n_rows, n_labels), scale, weight, opts.reduction,
                  chunk_terms)


@computes_half_in_float32
@named_keywords
def linear_binary_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, pos_weight=None,
                                label_smoothing=0.0, reduction="mean", normalizer=None, chunk_size=None):
    r"""Multi-label sigmoid BCE of ``hidden @ classifier.T (+ bias)`` over L labels, chunked by rows.

    .. math:: l_i = -\sum_{k=1}^{L} \left(w_{+,k} y'_{ik}\log\sigma(z_{ik})
              + (1 - y'_{ik})\log\sigma(-z_{ik})\right)

    For extreme multi-label classification (large L): the N x L logits are never held at once.
    Shapes: ``hidden [N, D]``, ``classifier [L, D]``, ``target [N, L]`` of 0/1 or probabilities,
    ``bias [L]``, ``pos_weight`` number or ``[L]``, ``weight [N]``. Equals
    ``multilabel_cross_entropy(hidden @ classifier.T + bias, target, ...)``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.linear_binary_cross_entropy(np.ones((1, 2)), np.zeros((3, 2)), np.ones((1, 3)))), 6)
    2.079442
    """
    return linear_binary_cross_entropy_value_and_grad(
        hidden, classifier, target, bias=bias, weight=weight, pos_weight=pos_weight,
        label_smoothing=label_smoothing, reduction=reduction, normalizer=normalizer, chunk_size=chunk_size)[0]
