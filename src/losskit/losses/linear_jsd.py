r"""Fused linear + generalised JSD distillation (GKD) that never materialises the N x V logits.

For the student's hidden states ``h [N, D]`` and classifier ``C [V, D]`` (bias ``b``), and the
teacher's ``h' [N, D']``, ``C' [V, D']`` (``b'``): per row, the generalised JSD of
:class:`~losskit.JSDivergence` between ``softmax((h C^T + b) / T)`` and ``softmax((h' C'^T + b') / T)``,
summed over the rows that are not ignored and divided by their count (TRL's ``"batchmean"``).

Design note: the chunked sweep of :mod:`losskit.losses.linear` (one chunk of rows at a time; the
chunk's gradient folded at once into ``grad_hidden`` and ``grad_classifier``), with a second
``chunk x V`` buffer for the teacher's logits, which need no gradient: the teacher's arrays are
read, never differentiated. On NumPy float32/float64 the student's chunk buffer becomes its own
gradient in the compiled :func:`~losskit.fused.jsd.jsd_kernel`; elsewhere (and for rows with a
non-finite logit) :func:`~losskit.losses.distribution.generalized_jsd_terms` is the array-API
reference, the one the catalogue's ``JSDivergence`` computes.
"""

from __future__ import annotations

import math

from .. import _array, _checks
from .. import reduction as _reduction
from ._half import computes_half_in_float32
from .declaration import number
from .distribution import JSDivergence, _temperature_fits, generalized_jsd_terms
from .linear import KeptRows, LinearCEOptions, _logits, _sweep, check_layer, host_arrays, host_sweep, host_value

__all__ = ["linear_jsd_loss", "linear_jsd_loss_value_and_grad", "student_value_and_grad"]

_STUDENT = ("student_hidden", "student_classifier", "student_bias")
_TEACHER = ("teacher_hidden", "teacher_classifier", "teacher_bias")


@computes_half_in_float32
def linear_jsd_loss_value_and_grad(student_hidden, student_classifier, teacher_hidden, teacher_classifier,
                                   target=None, *, beta=0.5, temperature=1.0, ignore_index=-100,
                                   student_bias=None, teacher_bias=None, chunk_size=None):
    r"""``(value, (grad_student_hidden, grad_student_classifier, grad_student_bias))`` of
    :func:`linear_jsd_loss`, in one sweep. ``grad_student_bias`` is None without a student bias; the
    teacher gets no gradient. ``grad_student_hidden`` has ``student_hidden``'s shape.
    """
    beta = number(beta, "beta", low=0.0, high=1.0)
    temperature = number(temperature, "temperature", low=0.0, low_open=True)
    ignore_index = _checks.ignore_index(ignore_index)
    rows_option = LinearCEOptions(chunk_size=chunk_size)  # the chunk's rule and check, as the linear CE's
    _checks.given(**dict(zip(_STUDENT[:2] + _TEACHER[:2], (student_hidden, student_classifier, teacher_hidden,
                                                           teacher_classifier), strict=True)))
    xp, arrays = _array.namespace(student_hidden=student_hidden, student_classifier=student_classifier,
                                  student_bias=student_bias, teacher_hidden=teacher_hidden,
                                  teacher_classifier=teacher_classifier, teacher_bias=teacher_bias, target=target)
    hidden, teacher = arrays["student_hidden"], arrays["teacher_hidden"]
    shape = tuple(hidden.shape)
    _checks.floating(xp, hidden, "student_hidden")
    if hidden.ndim not in (2, 3):
        raise _checks.fail("student_hidden", "shape [N, D] or [B, T, D]", f"shape {shape}")
    if teacher.ndim != hidden.ndim or tuple(teacher.shape[:-1]) != shape[:-1]:
        raise _checks.fail("teacher_hidden", f"shape {shape[:-1] + ('D_teacher',)} (student_hidden's rows)",
                           f"shape {tuple(teacher.shape)}")
    n_rows = math.prod(shape[:-1])
    hidden = xp.reshape(hidden, (n_rows, shape[-1]))
    teacher = xp.reshape(teacher, (n_rows, teacher.shape[-1]))
    classifier, bias = arrays["student_classifier"], arrays["student_bias"]
    t_classifier, t_bias = arrays["teacher_classifier"], arrays["teacher_bias"]
    check_layer(xp, hidden, classifier, bias, _STUDENT)
    _temperature_fits(xp, temperature, hidden.dtype, squared=False)  # (no T^2 factor)
    if teacher.dtype != hidden.dtype:
        raise _checks.fail("teacher_hidden", f"dtype {hidden.dtype} (student_hidden's)", f"dtype {teacher.dtype}")
    n_vocab = classifier.shape[0]
    if t_classifier.ndim != 2 or t_classifier.shape[0] != n_vocab:
        raise _checks.fail("teacher_classifier", f"shape ({n_vocab}, D_teacher): the student's vocabulary",
                           f"shape {tuple(t_classifier.shape)}")
    check_layer(xp, teacher, t_classifier, t_bias, _TEACHER)
    # (an integer bias is cast, as every fused linear loss casts one: linear.check_bias)
    bias, t_bias = (None if b is None else xp.astype(b, hidden.dtype) for b in (bias, t_bias))
    keep = _keep(xp, arrays["target"], shape[:-1], n_rows, ignore_index, hidden, n_vocab)
    scale, _ = _reduction.scale(xp, keep, n_rows, "mean", None, hidden)
    scale = xp.broadcast_to(scale, (n_rows,))
    rows = rows_option.rows(n_rows, n_vocab)

    result = _host(hidden, classifier, bias, teacher, t_classifier, t_bias, scale, beta, temperature, rows)
    if result is None:
        def chunk_terms(start, stop, h):
            z, _ = _logits(xp, h, classifier, bias, None)
            u, _ = _logits(xp, teacher[start:stop, ...], t_classifier, t_bias, None)
            loss, grad, _ = generalized_jsd_terms(xp, z, u, beta, temperature, 1)
            return loss, grad

        result = _sweep(xp, hidden, classifier, bias, rows, scale, keep, "mean", chunk_terms)
    value, (grad_hidden, grad_classifier, grad_bias) = result
    return value, (xp.reshape(grad_hidden, shape), grad_classifier, grad_bias)


def student_value_and_grad(hidden, classifier, target, *, bias=None, teacher_hidden, teacher_classifier,
                           teacher_bias=None, ignore_index=-100, **options):
    """:func:`linear_jsd_loss_value_and_grad` in the layout of the framework wrappers of a fused linear
    loss (``losskit.torch.fused_linear``, ``losskit.jax.fused_linear``): the student's layer as
    ``(hidden, classifier, target, bias)``, the teacher's arrays as keywords, read and never
    differentiated. Shapes and result as :func:`linear_jsd_loss_value_and_grad`."""
    return linear_jsd_loss_value_and_grad(hidden, classifier, teacher_hidden, teacher_classifier, target,
                                          student_bias=bias, teacher_bias=teacher_bias, ignore_index=ignore_index,
                                          **options)


def _keep(xp, target, batch_shape, n_rows, ignore_index, like, n_vocab):
    """The 0/1 weight of each row (``target != ignore_index``), or None: every row counts. The ids are
    checked as the other fused losses check them (in the vocabulary, or ``ignore_index``), though only the
    mask is read: an id outside it is a target that does not belong to these rows."""
    if target is None:
        return None
    if not _array.isdtype(xp, target.dtype, "integral") or tuple(target.shape) != tuple(batch_shape):
        raise _checks.fail("target", f"integer token ids of shape {tuple(batch_shape)} (student_hidden's rows), "
                           "or None", f"shape {tuple(target.shape)} and dtype {target.dtype}")
    read = _checks.labels_in_range(xp, target, n_vocab, ignore_index)
    flat = xp.reshape(target, (n_rows,))
    keep = None if ignore_index is None else xp.astype(flat != ignore_index, like.dtype)
    # ids that could not be read (traced, lazy): a row of an id outside the vocabulary weighs NaN
    return keep if read else _checks.bad_labels_nan(xp, flat, n_vocab, ignore_index, keep, like.dtype)


def _host(hidden, classifier, bias, teacher, t_classifier, t_bias, scale, beta, temperature, rows):
    """NumPy: :func:`~losskit.losses.linear.host_sweep` with the compiled JSD (the student's chunk
    buffer becomes its gradient; the teacher's logits go into a second buffer). None when the arrays
    are not NumPy float32/float64, numba is missing, or a chunk flagged a row."""
    if not host_arrays(hidden, classifier, bias, teacher, t_classifier, t_bias):
        return None
    import numpy as np

    from ..fused.jsd import jsd_scratch
    from ._compiled import compiled_math, jsd_kernel

    scale = np.ascontiguousarray(scale, dtype=hidden.dtype)
    kept = KeptRows(scale)  # an ignored row: neither the student's nor the teacher's logits computed
    scale, teacher = kept.take(scale), kept.take(teacher)
    scaled_loss = np.zeros(kept.count)
    teacher_logits = np.empty((min(rows, max(kept.count, 1)), classifier.shape[0]), dtype=hidden.dtype)
    kernel, xp = jsd_kernel(JSDivergence), compiled_math(hidden.dtype)
    scratch = jsd_scratch(teacher_logits.shape[0], classifier.shape[0], hidden.dtype)

    def fill(start, stop, z, flags):
        u = teacher_logits[: stop - start]
        np.matmul(teacher[start:stop], t_classifier.T, out=u)
        if t_bias is not None:
            u += t_bias
        kernel(xp, z, u, scratch[: stop - start], scale[start:stop], beta, temperature, scaled_loss[start:stop], flags)

    grads = host_sweep(kept.take(hidden), classifier, bias, rows, fill)
    if grads is None:
        return None
    return host_value(kept.spread(scaled_loss), "mean", hidden.dtype), (kept.spread(grads[0]), *grads[1:])


@computes_half_in_float32
def linear_jsd_loss(student_hidden, student_classifier, teacher_hidden, teacher_classifier, target=None, *,
                    beta=0.5, temperature=1.0, ignore_index=-100, student_bias=None, teacher_bias=None,
                    chunk_size=None):
    r"""Generalised JSD (GKD) of the student's output layer from the teacher's, without N x V logits.

    With :math:`p = \mathrm{softmax}((h C^\top + b) / T)`, :math:`q = \mathrm{softmax}((h' C'^\top + b') / T)`
    per row and :math:`m = \beta q + (1 - \beta) p`:

    .. math:: l = \begin{cases} \mathrm{KL}(q \| p) & \beta = 0 \\
              \beta\,\mathrm{KL}(q \| m) + (1 - \beta)\,\mathrm{KL}(p \| m) & 0 < \beta < 1 \\
              \mathrm{KL}(p \| q) & \beta = 1 \end{cases}, \qquad
              \mathrm{value} = \frac{\sum_{i \text{ kept}} l_i}{\#\{i \text{ kept}\}}

    TRL's ``GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels, beta,
    temperature)`` with its default ``"batchmean"``, exactly (no :math:`T^2` factor; no hard-label
    term). Shapes: ``student_hidden [N, D]`` or ``[B, T, D]``, ``student_classifier [V, D]``,
    ``teacher_hidden [N, D']`` or ``[B, T, D']``, ``teacher_classifier [V, D']``, ``target [N]`` or
    ``[B, T]`` integer (only its ``ignore_index`` positions are read: they are left out; None: every
    row counts), biases ``[V]``. All floating arrays share one dtype. ``chunk_size``: rows per chunk
    (default: a chunk of logits near 2^25 numbers). Every row ignored gives 0.

    >>> import numpy as np, losskit as lk
    >>> h, c = np.ones((2, 3)), np.zeros((4, 3))
    >>> float(lk.linear_jsd_loss(h, c, h, c))  # the same distributions: 0
    0.0
    """
    return linear_jsd_loss_value_and_grad(
        student_hidden, student_classifier, teacher_hidden, teacher_classifier, target, beta=beta,
        temperature=temperature, ignore_index=ignore_index, student_bias=student_bias, teacher_bias=teacher_bias,
        chunk_size=chunk_size)[0]
