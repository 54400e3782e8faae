r"""Fused linear + cross-entropy that never materialises the N x V logits.

For hidden states ``h [N, D]``, an output layer ``W [V, D]`` (and bias ``b [V]``) and labels ``y``:

.. math:: z = h W^\top + b, \quad s = c \tanh(z / c) \text{ (softcap, optional)},

.. math:: l_i = \mathrm{lse}(s_i) - (1 - a) s_{i y_i} - \frac{a}{V} \sum_k s_{ik}
          + \zeta\, \mathrm{lse}(s_i)^2

Design note: rows are processed in chunks. For each chunk the logits are formed, turned into
the loss and ``d l / d z`` (softmax minus the smoothed target, z-loss and softcap factors, times
the reduction's per-example scale), and immediately folded into ``grad_hidden`` (a chunk of
``G W``) and ``grad_weight`` (``+= G^T h``), so peak extra memory is a few ``chunk x V`` buffers,
never ``N x V``. The reduction's denominator (sum of example weights) is known before the first
chunk, from the labels alone. ``grad_weight`` is accumulated in place where the library allows
it (``addmm_`` on torch tensors; BLAS gemm with beta = 1 on NumPy when SciPy is installed), so
no second ``V x D`` buffer is made per chunk; elsewhere (JAX) it is ``acc + G^T h``, which XLA
fuses under ``jit``. The alternative of recomputing the logits in backward (Apple's
cut-cross-entropy) saves the chunk buffer but doubles the matmuls; on a CPU the matmuls are the
cost, so the gradients are computed in the same sweep as the loss.
"""

from __future__ import annotations

from .. import _array, _checks
from ..activations import log_normalizer_xp, shifted_logits_xp
from ..reduction import reduce

__all__ = ["linear_cross_entropy", "linear_cross_entropy_value_and_grad",
           "linear_binary_cross_entropy", "linear_binary_cross_entropy_value_and_grad"]

#: default chunk: rows such that one chunk of logits holds about 2^25 numbers (128 MiB in float32):
#: big enough for efficient gemms (261 rows at V = 128256), small next to N x V
CHUNK_ELEMENTS = 1 << 25


def _chunk_rows(chunk_size, n_rows: int, n_vocab: int) -> int:
    if chunk_size is None:
        return max(1, min(n_rows, CHUNK_ELEMENTS // max(n_vocab, 1)))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise _checks.fail("chunk_size", "None or a positive int (rows per chunk)", repr(chunk_size))
    return min(chunk_size, max(n_rows, 1))


def _accumulate_at_b(xp, acc, a, b):
    """``acc + a @ b``, in place where the library can (see the module note)."""
    if hasattr(acc, "addmm_"):  # torch: one gemm with beta = 1
        return acc.addmm_(a, b)
    if type(acc).__module__ == "numpy":
        try:
            from scipy.linalg import blas
        except ImportError:
            acc += a @ b
            return acc
        gemm = blas.dgemm if acc.dtype.itemsize == 8 else blas.sgemm
        # Fortran order: acc^T (D x V) += b^T (a^T), written into acc's own memory; a is passed
        # as it is with trans_b, so a transposed C-ordered chunk is not copied
        if acc.flags.c_contiguous:
            out = gemm(1.0, b.T, a, beta=1.0, c=acc.T, trans_b=True, overwrite_c=True)
            if out.ctypes.data == acc.ctypes.data:
                return acc
            acc[...] = out.T
            return acc
        acc += a @ b
        return acc
    return acc + a @ b


def _arrays(hidden, weight, target, bias, example_weight):
    """The namespace and the arrays of a linear loss call, with the checks both losses share."""
    xp, arrays = _array.namespace(hidden=hidden, weight=weight, target=target, bias=bias,
                                  example_weight=example_weight)
    _check_common(xp, arrays["hidden"], arrays["weight"], arrays["bias"])
    return (xp, arrays["hidden"], arrays["weight"], arrays["target"], arrays["bias"],
            arrays["example_weight"])


def _check_common(xp, hidden, weight, bias):
    for name, array in (("hidden", hidden), ("weight", weight)):
        _checks.floating(xp, array, name)
        if array.ndim != 2:
            raise _checks.fail(name, "a 2-D array", f"shape {tuple(array.shape)}")
    if hidden.shape[1] != weight.shape[1]:
        raise _checks.fail("weight", f"shape (V, {hidden.shape[1]}) to match hidden's {hidden.shape[1]} "
                           "features", f"shape {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        raise _checks.fail("weight", f"dtype {hidden.dtype} (hidden's)", f"dtype {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise _checks.fail("bias", f"shape ({weight.shape[0]},)", f"shape {tuple(bias.shape)}")


def _logits(xp, h, weight, bias, softcap):
    z = h @ xp.matrix_transpose(weight)
    if bias is not None:
        z = z + bias
    if softcap is None:
        return z, None
    t = xp.tanh(z / softcap)
    return softcap * t, t


def _example_weights(xp, target, example_weight, class_weight, ignore, like):
    keep = None if ignore is None else target != ignore
    labels = target if keep is None else xp.where(keep, target, xp.zeros_like(target))
    weight = None if example_weight is None else xp.astype(example_weight, like.dtype)
    if class_weight is not None:
        cw = xp.take(class_weight, labels, axis=0)
        weight = cw if weight is None else weight * cw
    if keep is not None:
        weight = xp.astype(keep, like.dtype) if weight is None else weight * xp.astype(keep, like.dtype)
    return labels, weight, keep


def linear_cross_entropy_value_and_grad(hidden, weight, target, *, bias=None, chunk_size=None,
                                        ignore_index=None, label_smoothing=0.0, class_weight=None,
                                        example_weight=None, z_loss=0.0, softcap=None, reduction="mean",
                                        normalizer=None):
    r"""``(value, (grad_hidden, grad_weight, grad_bias))`` of :func:`linear_cross_entropy`, in one sweep.

    Shapes: ``hidden [N, D]``, ``weight [V, D]``, ``target [N]`` integer, ``bias [V]`` or None,
    ``class_weight [V]``, ``example_weight [N]``. ``grad_bias`` is None without a bias. Gradients
    are of the reduced value (for ``"none"``, of ``sum(none)``), as everywhere in losskit.
    """
    xp, hidden, weight, target, bias, example_weight = _arrays(hidden, weight, target, bias, example_weight)
    reduction = _checks.reduction(reduction)
    a = _checks.label_smoothing(label_smoothing)
    ignore = _checks.ignore_index(ignore_index)
    normalizer = _checks.normalizer(normalizer)
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or z_loss < 0:
        raise _checks.fail("z_loss", "a scale >= 0", repr(z_loss))
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float))
                                or softcap <= 0):
        raise _checks.fail("softcap", "None or a positive number", repr(softcap))
    n_rows, n_vocab = hidden.shape[0], weight.shape[0]
    if not xp.isdtype(target.dtype, "integral") or tuple(target.shape) != (n_rows,):
        raise _checks.fail("target", f"integer class indices of shape ({n_rows},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    _checks.labels_in_range(xp, target, n_vocab, ignore)
    if example_weight is not None:
        _checks.same_shape("example_weight", example_weight, "one value per row of hidden", (n_rows,))
        _checks.non_negative(xp, example_weight, "example_weight")
    if class_weight is not None:
        class_weight = _array.option_array(xp, class_weight, "class_weight", hidden)
        if tuple(class_weight.shape) != (n_vocab,):
            raise _checks.fail("class_weight", f"shape ({n_vocab},)", f"shape {tuple(class_weight.shape)}")
        _checks.non_negative(xp, class_weight, "class_weight")

    labels, w, keep = _example_weights(xp, target, example_weight, class_weight, ignore, hidden)
    # the reduction's per-example scale is known before any logits exist
    _, scale = reduce(xp, xp.zeros((n_rows,), dtype=hidden.dtype, device=_array.device(hidden)), w,
                      reduction, normalizer)
    scale = xp.broadcast_to(scale, (n_rows,))

    rows = _chunk_rows(chunk_size, n_rows, n_vocab)
    if _numpy_kernel_applies(hidden, weight, bias, z_loss, softcap):
        try:
            return _numpy_sweep(hidden, weight, bias, labels, keep, w, scale, a, rows, reduction, normalizer)
        except _NotFinite:
            pass
    classes = xp.arange(n_vocab, dtype=labels.dtype, device=_array.device(labels))

    def chunk_terms(start, stop, h):
        """Per-example loss of rows start:stop and ``d loss / d logits`` (before the scale)."""
        y = labels[start:stop]
        s, t = _logits(xp, h, weight, bias, softcap)
        shifted, m = shifted_logits_xp(xp, s)
        log_norm = log_normalizer_xp(xp, shifted)
        lse = (m + log_norm)[..., 0]
        onehot = y[:, None] == classes
        picked = xp.sum(xp.where(onehot, s, xp.zeros_like(s)), axis=-1)
        loss = lse - (1 - a) * picked
        if a:
            loss = loss - (a / n_vocab) * xp.sum(s, axis=-1)
        if z_loss:
            loss = loss + z_loss * lse * lse
        p = xp.exp(shifted - log_norm)
        g = p * (1 + 2 * z_loss * lse)[:, None] if z_loss else p
        g = xp.where(onehot, g - (1 - a + a / n_vocab), g - a / n_vocab)
        if t is not None:
            g = g * (1 - t * t)  # d softcap(z) / dz
        return loss, g

    return _sweep(xp, hidden, weight, bias, rows, scale, w, reduction, normalizer, chunk_terms)


def _sweep(xp, hidden, weight, bias, rows, scale, w, reduction, normalizer, chunk_terms):
    """The chunked sweep both linear losses share: per chunk, the loss and ``d loss / d logits``
    from ``chunk_terms``, scaled by the reduction, folded into the three gradients."""
    grad_hidden_parts, losses = [], []
    grad_weight = xp.zeros(weight.shape, dtype=weight.dtype, device=_array.device(weight))
    grad_bias = None if bias is None else xp.zeros(bias.shape, dtype=bias.dtype, device=_array.device(bias))
    for start in range(0, hidden.shape[0], rows):
        stop = min(start + rows, hidden.shape[0])
        h = hidden[start:stop, ...]
        loss, g = chunk_terms(start, stop, h)
        losses.append(loss)
        g = g * scale[start:stop, None]
        grad_hidden_parts.append(g @ weight)
        grad_weight = _accumulate_at_b(xp, grad_weight, xp.matrix_transpose(g), h)
        if grad_bias is not None:
            grad_bias = grad_bias + xp.sum(g, axis=0)
    per_example = xp.concat(losses) if len(losses) > 1 else losses[0]
    value, _ = reduce(xp, per_example, w, reduction, normalizer)
    grad_hidden = xp.concat(grad_hidden_parts) if len(grad_hidden_parts) > 1 else grad_hidden_parts[0]
    return value, (grad_hidden, grad_weight, grad_bias)


def _numpy_kernel_applies(hidden, weight, bias, z_loss, softcap) -> bool:
    import numpy as np

    from . import available

    arrays = [hidden, weight] + ([] if bias is None else [bias])
    return (not z_loss and softcap is None and available()
            and all(isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) for x in arrays))


def _numpy_sweep(hidden, weight, bias, labels, keep, w, scale, smoothing, rows, reduction, normalizer):
    """NumPy fast path: the chunk's logits buffer becomes its gradient in place (compiled kernel),
    then two gemms; ``grad_weight`` is accumulated in place. One ``rows x V`` buffer in all."""
    import numpy as np

    from .kernels import softmax_ce_rows

    n_rows, n_vocab = hidden.shape[0], weight.shape[0]
    keep = np.ones(n_rows, dtype=bool) if keep is None else np.asarray(keep)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    scale = np.ascontiguousarray(scale, dtype=hidden.dtype)
    buffer = np.empty((rows, n_vocab), dtype=hidden.dtype)
    per_example = np.empty(n_rows, dtype=hidden.dtype)
    grad_hidden = np.empty_like(hidden)
    grad_weight = np.zeros_like(weight)
    grad_bias = None if bias is None else np.zeros_like(bias)
    flags = np.zeros(rows, dtype=np.uint8)
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        h, z = hidden[start:stop], buffer[: stop - start]
        np.matmul(h, weight.T, out=z)
        if bias is not None:
            z += bias
        softmax_ce_rows(z, labels[start:stop], keep[start:stop], scale[start:stop], smoothing,
                        per_example[start:stop], z, flags[: stop - start])
        if flags.any():  # a non-finite logit: the exact path, from scratch
            raise _NotFinite
        np.matmul(z, weight, out=grad_hidden[start:stop])
        _accumulate_at_b(np, grad_weight, z.T, h)
        if grad_bias is not None:
            grad_bias += z.sum(axis=0)
    value, _ = reduce(np, per_example, w, reduction, normalizer)
    return np.asarray(value, dtype=hidden.dtype)[()], (grad_hidden, grad_weight, grad_bias)


class _NotFinite(Exception):
    """A chunk had a non-finite logit; the array-API sweep gives the exact limits."""


def linear_cross_entropy(hidden, weight, target, *, bias=None, chunk_size=None, ignore_index=None,
                         label_smoothing=0.0, class_weight=None, example_weight=None, z_loss=0.0,
                         softcap=None, reduction="mean", normalizer=None):
    r"""Softmax cross-entropy of ``hidden @ weight.T (+ bias)`` without the N x V logits in memory.

    .. math:: l_i = \mathrm{lse}(s_i) - (1 - a) s_{i y_i} - \frac{a}{V}\sum_k s_{ik}
              + \zeta\,\mathrm{lse}(s_i)^2, \quad s = c \tanh((h W^\top + b) / c)

    Shapes: ``hidden [N, D]``, ``weight [V, D]``, ``target [N]`` integer, ``bias [V]``.
    Options as :func:`losskit.softmax_cross_entropy` (``class_weight [V]``, ``example_weight [N]``
    per row, ``ignore_index``, ``label_smoothing`` a/V, ``reduction``, ``normalizer``) plus
    ``z_loss`` (scale of ``lse^2``), ``softcap`` (c, or None) and ``chunk_size`` (rows per chunk;
    default keeps a chunk of logits near 2^25 numbers). Equals
    ``softmax_cross_entropy(hidden @ weight.T + bias, target, ...)`` for ``z_loss=0``, ``softcap=None``.

    >>> import numpy as np, losskit as lk
    >>> h, w = np.ones((2, 3)), np.zeros((4, 3))
    >>> round(float(lk.linear_cross_entropy(h, w, np.array([0, 3]))), 6)  # uniform over 4: log 4
    1.386294
    """
    return linear_cross_entropy_value_and_grad(
        hidden, weight, target, bias=bias, chunk_size=chunk_size, ignore_index=ignore_index,
        label_smoothing=label_smoothing, class_weight=class_weight, example_weight=example_weight,
        z_loss=z_loss, softcap=softcap, reduction=reduction, normalizer=normalizer)[0]


def linear_binary_cross_entropy_value_and_grad(hidden, weight, target, *, bias=None, chunk_size=None,
                                               pos_weight=None, label_smoothing=0.0, example_weight=None,
                                               reduction="mean", normalizer=None):
    r"""``(value, (grad_hidden, grad_weight, grad_bias))`` of :func:`linear_binary_cross_entropy`."""
    xp, hidden, weight, target, bias, example_weight = _arrays(hidden, weight, target, bias, example_weight)
    reduction = _checks.reduction(reduction)
    a = _checks.label_smoothing(label_smoothing)
    normalizer = _checks.normalizer(normalizer)
    n_rows, n_labels = hidden.shape[0], weight.shape[0]
    _checks.same_shape("target", target, "one row of labels per row of hidden", (n_rows, n_labels))
    target = xp.astype(target, hidden.dtype)
    _checks.in_unit_interval(xp, target, "target")
    pw = None
    if pos_weight is not None:
        pw = _array.option_array(xp, pos_weight, "pos_weight", hidden)
        if pw.ndim > 1 or (pw.ndim == 1 and pw.shape[0] != n_labels):
            raise _checks.fail("pos_weight", f"a number or shape ({n_labels},)", f"shape {tuple(pw.shape)}")
        _checks.non_negative(xp, pw, "pos_weight")
    w = None
    if example_weight is not None:
        _checks.same_shape("example_weight", example_weight, "one value per row of hidden", (n_rows,))
        _checks.non_negative(xp, example_weight, "example_weight")
        w = xp.astype(example_weight, hidden.dtype)
    _, scale = reduce(xp, xp.zeros((n_rows,), dtype=hidden.dtype, device=_array.device(hidden)), w,
                      reduction, normalizer)
    scale = xp.broadcast_to(scale, (n_rows,))
    from ..losses.binary import bce_logits_terms

    rows = _chunk_rows(chunk_size, n_rows, n_labels)

    def chunk_terms(start, stop, h):
        z, _ = _logits(xp, h, weight, bias, None)
        y = target[start:stop, ...]
        y = y if a == 0 else (1 - a) * y + a / 2
        loss, g, _ = bce_logits_terms(xp, z, y, pw, 1)
        return xp.sum(loss, axis=-1), g

    return _sweep(xp, hidden, weight, bias, rows, scale, w, reduction, normalizer, chunk_terms)


def linear_binary_cross_entropy(hidden, weight, target, *, bias=None, chunk_size=None, pos_weight=None,
                                label_smoothing=0.0, example_weight=None, reduction="mean", normalizer=None):
    r"""Multi-label sigmoid BCE of ``hidden @ weight.T (+ bias)`` over L labels, chunked by rows.

    .. math:: l_i = -\sum_{k=1}^{L} \left(w_{+,k} y'_{ik}\log\sigma(z_{ik})
              + (1 - y'_{ik})\log\sigma(-z_{ik})\right)

    For extreme multi-label classification (large L): the N x L logits are never held at once.
    Shapes: ``hidden [N, D]``, ``weight [L, D]``, ``target [N, L]`` of 0/1 or probabilities,
    ``bias [L]``, ``pos_weight`` number or ``[L]``, ``example_weight [N]``. Equals
    ``multilabel_cross_entropy(hidden @ weight.T + bias, target, ...)``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.linear_binary_cross_entropy(np.ones((1, 2)), np.zeros((3, 2)), np.ones((1, 3)))), 6)
    2.079442
    """
    return linear_binary_cross_entropy_value_and_grad(
        hidden, weight, target, bias=bias, chunk_size=chunk_size, pos_weight=pos_weight,
        label_smoothing=label_smoothing, example_weight=example_weight, reduction=reduction,
        normalizer=normalizer)[0]
