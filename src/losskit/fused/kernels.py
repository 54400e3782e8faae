"""Compiled CPU kernels (numba): a loss and its gradient in one sweep, plain arrays in and out.

Imported on the first call that can use them, so ``import losskit`` never loads numba. Each kernel
is ``parallel`` over rows, ``cache=True`` (the machine code is written to disk once per machine)
and runs in the input's dtype: float32 stays float32 in the SIMD loops, with the vectorisable
:func:`~losskit.fused.vmath.vexp` / :func:`~losskit.fused.vmath.vlog1p_unit`. A row's sums are
taken in the input's dtype across the SIMD lanes and unrolled accumulators (64 partial sums for
float32 on AVX-512, 32 on AVX2) within chunks of :data:`SUM_CHUNK` terms, the chunks' sums added
in float64 (the error of one float32 sum grows with the terms each accumulator holds), and the rows'
totals are added in float64.

Design note: a kernel is a leaf. It receives what the call plan settled (labels made safe, the
reduction's per-example ``scale``, which is 0 for an ignored or weight-0 example), never raises
and never re-derives an option. It writes the scaled loss ``scale * l`` (0 where scale is 0,
even if ``l`` is inf) and the scaled gradient ``scale * dl/dz``. A row it cannot do exactly (a
non-finite logit, a loss that overflows, a label out of range) gets ``flags[i] = 1``: the caller
then answers the whole call on the array-API path, which gives the exact limit or the error.
``fastmath`` allows only reassociation, which is what lets LLVM vectorise the sums, and
contraction into fused multiply-adds (one rounding instead of two); the arithmetic of
``vexp``/``vlog1p_unit`` is compiled apart, with contraction only, so its range reduction keeps
its order.

Every loop that sums only reads, and every loop that writes sums nothing. LLVM compiles a loop that
writes one array and reads another twice: a vectorised body behind a run-time check that the arrays'
address ranges do not overlap, and a scalar body for when the check fails. The check is conservative
(arrays a few hundred bytes apart can fail it), and under reassociation the two bodies add a sum's
terms in different orders, so a sum taken in such a loop changed in its last bits with where the
allocator had put the buffers (``grad()`` and ``value_and_grad()`` differed by an ulp now and then). A
loop that writes (an ``exp`` stored, a gradient) computes each element alone, the same bits in either
body. And a kernel takes its sums in the same loops whether or not a gradient is asked, so the value is
the same bits either way (tests/test_kernel_placement.py).
"""

from __future__ import annotations

import hashlib
import math
import types

import numba
import numpy as np
from numba import prange

from . import (
    _diskcache,  # noqa: F401 - numba's disk cache keyed on the whole package (see there)
    no_alias_compiler,
)
from .vmath import row_max, vexp, vlog1p, vlog1p_unit

OPTIONS = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy",
           "fastmath": {"reassoc", "contract"}}


#: a row's sums are taken in chunks of this many terms: each chunk's sum in the row's dtype (across the
#: SIMD accumulators, a few terms each), the chunks' sums added in float64. One float32 sum over a long
#: row loses precision with the terms each accumulator holds (at K = 32000 the softmax's normaliser was
#: off by ~10 eps, a near-one-hot target's sums by hundreds); chunks of a constant length cost nothing
#: measurable (the loop's trip count is known to LLVM), where blocks of a variable length cost ~1.4x
SUM_CHUNK = 256
# A row's last, shorter chunk starts at ``full = max(0, k - k % SUM_CHUNK)``: without the ``max`` LLVM could
# not prove the index ``full + step`` non-negative, kept numba's negative-index wraparound in the loop and
# ran that chunk scalar (5 ns a logit against 0.44 in the KL kernel: every row of fewer than 256 classes,
# the whole row; ``python -m benchmarks.short_rows --dense``, BENCHMARKS.md)
# For the same reason the chunks are counted, ``for chunk in range(full // SUM_CHUNK): start = chunk *
# SUM_CHUNK``, never ``for start in range(0, full, SUM_CHUNK)``: numba's stepped range hid from LLVM that
# ``start`` is non-negative, and a chunk's loop that only loads and adds (a stored exp's sums, a gradient's
# scaling) ran scalar, 8x slower (a sum of 256,000 float32: 0.39 ns a term against 0.046); a loop whose
# ``vexp`` dominates hid it.


#: the options of a kernel's helper: inlined into its caller (numba's IR: the kernel's loop or a ``ROW``
#: function), so that LLVM sees one loop, with the kernels' fastmath flags and error model
INLINE = {"inline": "always", "fastmath": {"reassoc", "contract"}, "error_model": "numpy"}
#: the options of a function that a parallel loop calls once per row or tile, a function of its own (not
#: inlined in numba's IR): numba's parfor lowering of a long loop body was most of a kernel's compile, and
#: the function compiles once per process for the parallel kernel and its serial twin. An empty numba
#: cache, rows of 300 classes, the twin then the parallel kernel (``python -m benchmarks.compile_time``,
#: BENCHMARKS.md): softmax focal 23.5 -> 7.5 s, softmax CE and Poly-1 10.7 -> 5.2 s; a first large call
#: alone, focal 16.1 -> 7.2 s, softmax CE 7.5 -> 4.8 s. Their times are level (``python -m
#: benchmarks.label_rows``: softmax CE, Poly-1 and focal level or faster, within the runs' spread). Not so
#: (inlined still): the blocked kernels of short rows, whose gradients ran 1.1x slower at 10 classes as
#: block functions, and :mod:`losskit.fused.rows`' kernels (KL's 1.04-1.36x slower at 4 to 255 classes
#: as block functions, ``python -m benchmarks.short_rows --dense``). A function that a flag specialises takes it
#: as a literal through two wrappers (:func:`_label_row_grad`, :func:`_label_row_value`). Never
#: ``cache=True``: its code is linked into each cached kernel, keyed by the kernel's module (numba would
#: key the function's own entry on its file alone). Compiled without the ``noalias`` flag (its caller may
#: write ``grad`` over ``z``), in the twins too: bits do not depend on it, since every loop that sums only
#: reads (LLVM's run-time overlap checks choose between copies of loops that write element by element)
ROW = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy", "nogil": True}


def source_identity(row, source=None) -> str:
    """A hash of the source text of the module that defines ``row`` and of every module of its package
    whose functions it can call (the functions and compiled functions among its globals and closure
    cells: ``vmath``'s overloaded maths, the formula helpers, the row's own helpers): a disk-cache key
    that changes when the row or a function it calls does, in any process. (numba's own key of a
    function is its file's time stamp and its bytecode, never its callees'.) ``source`` reads a
    module's text: :func:`inspect.getsource` unless given."""
    import inspect
    import sys

    read = source or inspect.getsource
    fn = row.py_func if isinstance(row, numba.core.dispatcher.Dispatcher) else row
    package = fn.__module__.split(".")[0]
    modules = {fn.__module__}
    for value in [*fn.__globals__.values(), *(cell.cell_contents for cell in fn.__closure__ or ())]:
        value = value.py_func if isinstance(value, numba.core.dispatcher.Dispatcher) else value
        if isinstance(value, types.FunctionType) and value.__module__.split(".")[0] == package:
            modules.add(value.__module__)
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(read(sys.modules[name]).encode())
    return digest.hexdigest()


def row_sweep(row, salt: int, cacheable: bool):
    """The kernel over the rows of three ``[R, K]`` buffers made from ``row``, a plain function of one row
    of each, the row's scale and two scalars, ``row(xp, a, b, c, s, u, v) -> (scaled loss, flagged)``::

        kernel(xp, a, b, c, scale, u, v, scaled_loss, flags)

    writes ``scaled_loss[i]``, or ``flags[i] = 1`` for a flagged row. The row is compiled as a function of
    its own, once for the parallel kernel and its serial twin, which both call it: with a long row body
    inside the ``prange`` loop, numba's parfor lowering took 13.0 s to compile the JSD's parallel kernel
    (float64, an empty cache), against 2.9 s for this loop beside the row's own 5.3 s (``python -m
    benchmarks.compile_time``, BENCHMARKS.md). The row is compiled with numba's noalias flag
    (:func:`~losskit.fused.no_alias_compiler`): no array the row writes may share memory with another of
    its arguments. ``salt`` keys the disk cache on the source of the formulas the row calls.

    The kernel finds the row as a global of its own (``_sweep_row``), not in a closure cell: numba keys its
    disk cache on the closure's pickle, and a local dispatcher pickles with a fresh uuid in each process
    (never found again). The key holds instead :func:`source_identity` of the row (``identity``). The row
    itself is not cached on disk: numba would key it on its own file's time stamp, and a kernel compiled
    after an edit of another file the row calls would link the row's stale code. A kernel loaded from
    the cache holds the row's code; a process compiles the row only when it compiles a kernel.
    """
    identity = source_identity(row)
    row = numba.njit(row, cache=False, pipeline_class=no_alias_compiler(),
                     **{k: v for k, v in OPTIONS.items() if k not in ("cache", "parallel")})

    def kernel(xp, a, b, c, scale, u, v, scaled_loss, flags):
        if salt < 0 or not identity:  # never: the two key the disk cache (the formulas' source, the row's)
            return
        for i in prange(a.shape[0]):
            scaled, flagged = _sweep_row(xp, a[i], b[i], c[i], scale[i], u, v)  # noqa: F821 - the global below
            if flagged:
                flags[i] = 1
            else:
                scaled_loss[i] = scaled

    kernel = types.FunctionType(kernel.__code__, {**kernel.__globals__, "_sweep_row": row}, kernel.__name__,
                                kernel.__defaults__, kernel.__closure__)
    kernel.__qualname__ = "row_sweep.<locals>.kernel"
    options = {k: v for k, v in OPTIONS.items() if k != "cache"}
    return numba.njit(kernel, cache=cacheable, **options)


@numba.njit(**INLINE)
def store_exp(row, out, m, start, count):
    """``exp(row - m)`` into ``out[start:start + count]``: a loop that writes and sums nothing."""
    for step in range(count):
        j = start + step
        out[j] = vexp(row[j] - m)


@numba.njit(**INLINE)
def _stored_exp_sums(row, buf, m, start, base, count, smoothing, in_place):
    """``exp(row - m)`` of ``count`` terms from ``start`` into ``buf[base:base + count]`` (a loop that
    writes), then their sums in the row's dtype while ``buf`` is still in L1 (:func:`stored_term_sums`:
    of the terms below 1, NaN if one is, and the count of the ties); with
    ``smoothing``, first the sum of ``row - m`` (read before ``buf``, which may be the row itself when
    ``in_place``, is written)."""
    shifted = row.dtype.type(0)  # a typed literal: a bare 0 would widen float32
    if smoothing:  # loop-invariant: LLVM takes the branch out of the loop
        for step in range(count):
            shifted += row[start + step] - m
    if in_place:  # buf is the row's own memory: one array, no run-time overlap check
        for step in range(count):
            buf[base + step] = vexp(buf[base + step] - m)
    else:
        for step in range(count):
            buf[base + step] = vexp(row[start + step] - m)
    below, ties = stored_term_sums(buf, base, count)
    return below, ties, shifted


@numba.njit(**INLINE)
def stored_term_sums(buf, start, count):
    """Over the stored terms ``exp(z - max) <= 1`` in ``buf[start:start + count]``: ``(the sum of those below 1,
    the count of those at 1)``, each in a loop of its own that only reads (one loop of both sums beside an exp
    was not vectorised: BENCHMARKS.md). A term whose exp rounds to 1 counts with the ties: their total is the
    same, and the normaliser ``log1p(below + ties - 1)`` stays exact for a sure row."""
    zero, one = buf.dtype.type(0), buf.dtype.type(1)
    below = zero
    for step in range(count):
        e = buf[start + step]
        below += e - (one if e >= one else zero)
    ties = zero
    for step in range(count):
        ties += one if buf[start + step] >= one else zero
    return below, ties


@numba.njit(**OPTIONS)
def softmax_ce_rows(z, labels, scale, smoothing, scaled_loss, grad, with_grad, flags, epsilon=0.0, alpha=None,
                    gamma=0.0):
    r"""Softmax CE per row of ``z [N, K]``: ``scaled_loss[i] = scale[i] * l_i`` (float64) and, when
    ``with_grad``, ``grad[i] = scale[i] * (softmax(z_i) - y'_i)``; ``grad`` may be ``z`` itself (the
    parallel kernel only: a serial twin is compiled ``noalias``, and its callers give it a buffer of its
    own). Without a gradient, ``grad`` is one writable row of scratch ``[1, K]`` that is not written.

    ``labels`` int64, already 0 for ignored rows (whose scale is 0); ``smoothing`` is ``a``. A row of
    weight 0 costs 0, whatever its logits. Three passes over a row: its max; ``exp(z - max)`` by chunks
    of :data:`SUM_CHUNK`, each chunk stored (in the row's gradient, or a chunk of scratch without one)
    and then summed while in L1 (:func:`_stored_exp_sums`); the gradient, the stored exps scaled in
    place. One ``exp`` a logit: taking it again in the gradient's pass cost a third of the call
    (``python -m benchmarks.long_rows``, BENCHMARKS.md). Rows go to the threads in blocks of about
    :data:`SHORT_BLOCK` logits (one row each from that width on), each block with its chunk of scratch.
    Precision as the array-API path: the normaliser is ``log1p`` of the terms below the row max (a sure
    row's tiny loss is not rounded to 0), and at the label the gradient is ``a (1 - 1/K) - sum_{k != y}
    p_k`` (exact when ``p_y`` rounds to 1). The value's sums are the same loops with or without a
    gradient: the same bits either way.

    The same rows serve two losses of labels that touch only the label's term, on rows of more than
    :data:`SHORT_ROW` classes (their blocked kernels, :func:`poly_short_rows` and :func:`focal_short_rows`,
    take shorter ones, with the same arithmetic): with ``epsilon``, Poly-1 (the loss plus :math:`\epsilon
    (1 - P)`, the stored softmax scaled by :math:`1 + \epsilon (1 - a) p_y`, the label's entry less
    :math:`\epsilon (1 - a) p_y q_y`); with ``alpha [K]`` (not None) and ``gamma``, softmax focal without
    smoothing (``smoothing`` is not read then: its callers pass 0; the label's term, the gradient
    :math:`-u p` off the label and :math:`u q_y` at it). Each took each exp twice in the row kernels of
    dense targets before (:mod:`losskit.fused.rows`).
    """
    n, k = z.shape
    block = max(1, SHORT_BLOCK // max(k, 1))
    in_place = with_grad and z.ctypes.data == grad.ctypes.data
    for b in prange((n + block - 1) // block):
        scratch = np.empty(0 if with_grad else min(k, SUM_CHUNK), z.dtype)
        for i in range(b * block, min(n, b * block + block)):
            if with_grad:
                _label_row_grad(z, labels, scale, smoothing, epsilon, alpha, gamma, scaled_loss, grad, flags, scratch,
                                in_place, i)
            else:
                _label_row_value(z, labels, scale, smoothing, epsilon, alpha, gamma, scaled_loss, grad, flags, scratch,
                                 i)


@numba.njit(**ROW)
def _label_row_grad(z, labels, scale, smoothing, epsilon, alpha, gamma, scaled_loss, grad, flags, scratch, in_place, i):
    """Row ``i`` of :func:`softmax_ce_rows` with its gradient (a function of its own: see :data:`ROW`): softmax CE
    or Poly-1 (:func:`_ce_row`) where ``alpha`` is None, which numba reads from its type and drops the focal
    copy; else focal (:func:`_focal_row`), whose softmax CE copy LLVM drops (a constant condition)."""
    if alpha is None:
        _ce_row(z, labels, scale, smoothing, epsilon, scaled_loss, grad, True, flags, scratch, in_place, i)
    else:
        _focal_row(z, labels, alpha, scale, gamma, scaled_loss, grad, True, flags, scratch, in_place, i)


@numba.njit(**ROW)
def _label_row_value(z, labels, scale, smoothing, epsilon, alpha, gamma, scaled_loss, grad, flags, scratch, i):
    """:func:`_label_row_grad`, the value alone."""
    if alpha is None:
        _ce_row(z, labels, scale, smoothing, epsilon, scaled_loss, grad, False, flags, scratch, False, i)
    else:
        _focal_row(z, labels, alpha, scale, gamma, scaled_loss, grad, False, flags, scratch, False, i)


@numba.njit(**INLINE)
def _label_row_sums(z, labels, scale, smoothing, scaled_loss, grad, with_grad, flags, scratch, in_place, i):
    """Row ``i``'s softmax over its stored exps (in its gradient row, or one chunk of ``scratch`` at a time
    without a gradient): ``(go, below, ties, d_y, e_y, shifted)``, in float64 the sum of the terms below 1
    and the count of the other ties with the max (the terms other than the max: ``below + ties``), the
    label's ``z_y - max`` and its exp, and (with smoothing) the sum of ``z - max``. ``go`` is False when the
    row is done: weight 0 (written 0, whatever its logits), or flagged (a label out of range, a row whose
    max is not finite)."""
    k = z.shape[1]
    row = z[i]
    y = labels[i]
    if _unweighted(scale[i], grad[i if with_grad else 0], with_grad, scaled_loss, i):
        return False, 0.0, 0.0, 0.0, 0.0, 0.0
    if y < 0 or y >= k:
        flags[i] = 1
        return False, 0.0, 0.0, 0.0, 0.0, 0.0
    m = row_max(row)
    if not math.isfinite(m):  # a +inf or all -inf row: the reference gives the limit
        flags[i] = 1
        return False, 0.0, 0.0, 0.0, 0.0, 0.0
    d_y = float(row[y]) - float(m)  # read before the row is overwritten (grad may alias z)
    buf = grad[i] if with_grad else scratch
    full = max(0, k - k % SUM_CHUNK)  # max: see SUM_CHUNK
    below, ties, shifted = 0.0, 0.0, 0.0
    for chunk in range(full // SUM_CHUNK):  # not a range with a step: see SUM_CHUNK
        start = chunk * SUM_CHUNK
        bl, t, sh = _stored_exp_sums(row, buf, m, start, start if with_grad else 0, SUM_CHUNK, smoothing > 0,
                                     in_place)
        below, ties, shifted = below + float(bl), ties + float(t), shifted + float(sh)
    bl, t, sh = _stored_exp_sums(row, buf, m, full, full if with_grad else 0, k - full, smoothing > 0, in_place)
    # the max itself is one of the ties
    return True, below + float(bl), ties + float(t) - 1.0, d_y, math.exp(d_y), shifted + float(sh)


@numba.njit(**INLINE)
def _scale_stored(g, y, scaled_inv, scaled_offset, at_label):
    """The gradient from the row's stored exps, scaled in place (one array, read and written), and the
    label's entry."""
    for j in range(g.shape[0]):
        g[j] = g[j] * scaled_inv - scaled_offset
    g[y] = at_label


@numba.njit(**INLINE)
def _ce_row(z, labels, scale, smoothing, epsilon, scaled_loss, grad, with_grad, flags, scratch, in_place, i):
    """Row ``i`` of :func:`softmax_ce_rows`, softmax CE (``epsilon`` 0: its terms add exact zeros) or Poly-1:
    the arithmetic of :func:`_short_block` (the normaliser's total as ``(1 + below) + ties``, as softmax CE's
    row kernel has always rounded it)."""
    go, below, ties, d_y, e_y, shifted = _label_row_sums(z, labels, scale, smoothing, scaled_loss, grad, with_grad,
                                                         flags, scratch, in_place, i)
    if not go:
        return
    k = z.shape[1]
    a = smoothing
    s = scale[i]
    rest = below + ties
    # lse - (1 - a) z_y - (a/K) sum z, in shifted logits: an exact 0 for a sure row
    loss = math.log1p(rest) - (1.0 - a) * d_y
    if a > 0:  # only then: a -inf logit makes `shifted` -inf, and 0 * -inf is NaN
        loss -= (a / k) * shifted
    total = 1.0 + below + ties
    # at the label: p_y - 1 = -sum_{k != y} p_k, exact when p_y rounds to 1
    others = rest if d_y >= 0 else rest + (1.0 - e_y)
    q_y, lift = others / total, (1.0 - a) * e_y / total  # 1 - p_y; P - a/K
    if epsilon != 0:
        loss += epsilon * _poly_missing(a, k, q_y)
    if not math.isfinite(loss):  # a NaN logit (the max is NaN then too), a loss that overflows
        flags[i] = 1
        return
    scaled_loss[i] = s * loss
    if with_grad:
        dtype = z.dtype.type
        _scale_stored(grad[i], labels[i], dtype(s * (1.0 + epsilon * lift) / total), dtype(s * a / k),
                      dtype(s) * dtype(a * (1.0 - 1.0 / k) - q_y - epsilon * lift * q_y))


@numba.njit(**INLINE)
def _poly_missing(a, k, q_y):
    """Poly-1's ``1 - P`` for a label row (float64): ``y'_y q_y + a/K (K - 1 - q_y)``, with ``sum y' = 1`` as
    rounded, from ``q_y = 1 - p_y`` (the other classes' mass) and the smoothing ``a`` over ``k`` classes."""
    high, low = 1.0 - a + a / k, a / k
    return high * q_y + low * ((k - 1) - q_y) + (1.0 - (high + (k - 1) * low))


@numba.njit(**INLINE)
def _focal_row(z, labels, alpha, scale, gamma, scaled_loss, grad, with_grad, flags, scratch, in_place, i):
    """Row ``i`` of :func:`softmax_ce_rows` for softmax focal: the arithmetic of :func:`focal_short_rows`."""
    go, below, ties, d_y, e_y, _ = _label_row_sums(z, labels, scale, 0.0, scaled_loss, grad, with_grad, flags,
                                                   scratch, in_place, i)
    if not go:
        return
    s = scale[i]
    y = labels[i]
    rest = below + ties
    loss, u, q_y, total = _focal_label_term(rest, d_y, e_y, math.log1p(rest), float(alpha[y]), gamma)
    if not math.isfinite(loss):
        flags[i] = 1
        return
    scaled_loss[i] = s * loss
    if with_grad:
        dtype = z.dtype.type
        _scale_stored(grad[i], y, dtype(-s * u / total), dtype(0), dtype(s * u * q_y))


@numba.njit(**INLINE)
def _focal_label_term(rest, d_y, e_y, log_norm, c, gamma):
    r"""Softmax focal's label term from its row's softmax (float64: the terms other than the max, the
    label's ``z_y - max`` and its exp, the log normaliser) and ``c = alpha_y``: ``(loss, u, q_y, total)``,
    the loss :math:`-c q_y^\gamma \log p_y`, :math:`u = c q_y^\gamma (\gamma p_y \rho - 1)` with
    :math:`\rho = \log p_y / q_y` (-1 in the limit :math:`q_y \to 0`), and :math:`q_y = 1 - p_y` from the
    other classes' mass."""
    total = 1.0 + rest
    others = rest if d_y >= 0 else rest + (1.0 - e_y)
    p_y, q_y = e_y / total, others / total
    lp = d_y - log_norm
    mod = q_y ** gamma  # 0 ** 0 = 1
    loss = 0.0 if c == 0 else -c * mod * lp
    rho = lp / q_y if q_y > 0 else -1.0
    p_rho = 0.0 if p_y == 0 else p_y * rho
    return loss, c * mod * (gamma * p_rho - 1.0), q_y, total


#: rows of at most this many classes take :func:`softmax_ce_short_rows` (a row's sums are then one
#: chunk of :data:`SUM_CHUNK`, as in :func:`softmax_ce_rows`): a row's own loops are short against
#: LLVM's vector body (4 lanes x 4 unrolled for float64 on AVX2), so most exps ran in the scalar
#: remainder loop, and each row paid a ``math.log1p`` and a ``math.exp`` besides (1348 x 10 float64:
#: 203 us a call, against 88 us in blocks; 1.4-2.4x at every K up to 256, float32 and float64,
#: ``python -m benchmarks.short_rows``, BENCHMARKS.md)
SHORT_ROW = SUM_CHUNK
#: the logits of one block of :func:`softmax_ce_short_rows` (whole rows; their exps held at once)
SHORT_BLOCK = 8192


@numba.njit(**OPTIONS)
def softmax_ce_short_rows(z, labels, scale, smoothing, scaled_loss, grad, with_grad, flags):
    """:func:`softmax_ce_rows` (softmax CE: without its optional arguments) for rows of at most
    :data:`SHORT_ROW` classes, with the same arguments and arithmetic, a block of whole rows (about
    :data:`SHORT_BLOCK` logits) at a time, each pass a loop of its own: the block's ``z - max`` written
    out; its exps in one flat loop over the whole block (full SIMD width, whatever K); each row's sums
    (only read); the rows' ``log1p`` normalisers and label exps in float64, flat over the block's rows
    (``math.log1p`` and ``math.exp`` per row cost as much as the row's own exps); then each row's loss
    and gradient. A term whose exp rounds to 1 counts with the ties (their total is the same), so the
    normaliser is still ``log1p`` of the terms below the max."""
    n, k = z.shape
    block = max(1, SHORT_BLOCK // max(k, 1))
    for b in prange((n + block - 1) // block):
        _short_block(z, labels, scale, smoothing, 0.0, scaled_loss, grad, with_grad, flags, b * block,
                     min(n, b * block + block))


@numba.njit(**OPTIONS)
def poly_short_rows(z, labels, scale, smoothing, epsilon, scaled_loss, grad, with_grad, flags):
    r""":func:`softmax_ce_short_rows` for Poly-1 of labels (:func:`softmax_ce_rows` with ``epsilon`` on longer rows):
    the loss plus :math:`\epsilon (1 - P)`, the gradient's softmax scaled by :math:`1 + \epsilon
    (1 - a) p_y` and its label entry less :math:`\epsilon (1 - a) p_y q_y` (:math:`q_y = 1 - p_y` from the
    other classes' mass). A row kernel pays per row what a short row cannot repay: the row kernel of
    the time (then ``rows.poly_rows``) ran at 0.8x torch eager's formula at 21 classes."""
    n, k = z.shape
    block = max(1, SHORT_BLOCK // max(k, 1))
    for b in prange((n + block - 1) // block):
        _short_block(z, labels, scale, smoothing, epsilon, scaled_loss, grad, with_grad, flags, b * block,
                     min(n, b * block + block))


@numba.njit(**INLINE)
def _unweighted(s, g, clear, scaled_loss, i):
    """Whether row ``i`` has weight 0; such a row costs 0, and its gradient row ``g`` is zeroed when
    ``clear`` (a kernel's ``with_grad``)."""
    if s != 0:
        return False
    scaled_loss[i] = 0.0
    if clear:
        for j in range(g.shape[0]):
            g[j] = g.dtype.type(0)
    return True


@numba.njit(**INLINE)
def _short_sums(z, labels, scale, flags, lo, hi):
    """The softmax statistics of rows ``lo:hi`` (each at most :data:`SHORT_ROW` classes) for the blocked
    kernels: ``(exps, maxima, rest, label_shift, log_norm, label_exp)``, the block's ``exp(z - max)``
    (flat, one row after another), each row's max, the terms other than the max (float64), ``z_y - max``,
    ``log1p(rest)`` and ``exp(z_y - max)``. A weighted row with a label out of range or a logit that is
    not finite is flagged (its rest 0); a row of weight 0 never is (its loss and gradient are 0, which
    the callers write first)."""
    k = z.shape[1]
    zero, one = z.dtype.type(0), z.dtype.type(1)
    rows = hi - lo
    exps = np.empty(rows * k, z.dtype)
    maxima = np.empty(rows, z.dtype)
    rest = np.empty(rows)  # the terms other than the max: below + ties - 1, in float64
    label_shift = np.zeros(rows)  # z_y - max, in float64
    log_norm = np.empty(rows)
    label_exp = np.empty(rows)
    for r in range(rows):
        i = lo + r
        m = row_max(z[i])
        maxima[r] = m
        for j in range(k):
            exps[r * k + j] = z[i, j] - m
    for p in range(rows * k):  # the one loop that takes the exps: a long trip count
        exps[p] = vexp(exps[p])
    for r in range(rows):
        i = lo + r
        y, m = labels[i], maxima[r]
        below, ties, every = zero, zero, zero
        for j in range(k):  # only reads (see the module's design note)
            e = exps[r * k + j]
            below += e if e < one else zero
            ties += one if e >= one else zero
            every += e
        rest[r] = float(below) + (float(ties) - 1.0)  # the max itself is one of the ties
        if scale[i] == 0 or y < 0 or y >= k or not (math.isfinite(m) and math.isfinite(every)):
            flags[i] = 0 if scale[i] == 0 else 1
            rest[r] = 0.0
            continue
        label_shift[r] = float(z[i, y]) - float(m)
    for r in range(rows):  # float64, flat over the rows: vectorised
        log_norm[r] = vlog1p(rest[r])
        label_exp[r] = vexp(label_shift[r])
    return exps, maxima, rest, label_shift, log_norm, label_exp


@numba.njit(**INLINE)
def _short_block(z, labels, scale, smoothing, epsilon, scaled_loss, grad, with_grad, flags, lo, hi):
    """Rows ``lo:hi`` of :func:`softmax_ce_short_rows` (``epsilon`` 0: a literal, whose terms LLVM drops)
    or :func:`poly_short_rows`."""
    k = z.shape[1]
    a = smoothing
    zero = z.dtype.type(0)
    rows = hi - lo
    exps, maxima, rest, label_shift, log_norm, label_exp = _short_sums(z, labels, scale, flags, lo, hi)
    for r in range(rows):
        i = lo + r
        s = scale[i]
        if _unweighted(s, grad[i if with_grad else 0], with_grad, scaled_loss, i) or flags[i]:
            continue  # a row of weight 0 costs 0, whatever its logits
        loss = log_norm[r] - (1.0 - a) * label_shift[r]
        if a > 0:  # only then: a -inf logit makes the sum -inf, and 0 * -inf is NaN
            shifted = zero
            for j in range(k):
                shifted += z[i, j] - maxima[r]
            loss -= (a / k) * float(shifted)
        total = 1.0 + rest[r]
        # at the label: p_y - 1 = -sum_{k != y} p_k, exact when p_y rounds to 1
        others = rest[r] if label_shift[r] >= 0 else rest[r] + (1.0 - label_exp[r])
        q_y, lift = others / total, (1.0 - a) * label_exp[r] / total  # 1 - p_y; P - a/K
        if epsilon != 0:
            loss += epsilon * _poly_missing(a, k, q_y)
        if not math.isfinite(loss):
            flags[i] = 1
            continue
        scaled_loss[i] = s * loss
        if not with_grad:
            continue
        scaled_inv, scaled_offset = z.dtype.type(s * (1.0 + epsilon * lift) / total), z.dtype.type(s * a / k)
        for j in range(k):
            grad[i, j] = exps[r * k + j] * scaled_inv - scaled_offset
        grad[i, labels[i]] = z.dtype.type(s) * z.dtype.type(a * (1.0 - 1.0 / k) - q_y - epsilon * lift * q_y)


@numba.njit(**OPTIONS)
def focal_short_rows(z, labels, alpha, scale, gamma, scaled_loss, grad, with_grad, flags):
    r"""Softmax focal of labels without smoothing (:func:`softmax_ce_rows` with ``alpha`` on longer rows) on
    rows of at most :data:`SHORT_ROW` classes, softmax CE's blocked statistics (:func:`_short_sums`) then
    each row's label term: :math:`-\alpha_y q_y^\gamma \log p_y`, gradient :math:`-u p` off the label and
    :math:`u q_y` at it, :math:`u = \alpha_y q_y^\gamma (\gamma p_y \rho - 1)`, :math:`\rho = \log p_y /
    q_y` (-1 in the limit :math:`q_y \to 0`). ``grad`` is ``[1, K]`` scratch without a gradient."""
    n, k = z.shape
    block = max(1, SHORT_BLOCK // max(k, 1))
    for b in prange((n + block - 1) // block):
        lo = b * block
        hi = min(n, lo + block)
        exps, _, rest, label_shift, log_norm, label_exp = _short_sums(z, labels, scale, flags, lo, hi)
        for r in range(hi - lo):
            i = lo + r
            s = scale[i]
            if _unweighted(s, grad[i if with_grad else 0], with_grad, scaled_loss, i) or flags[i]:
                continue  # a row of weight 0 costs 0, whatever its logits
            loss, u, q_y, total = _focal_label_term(rest[r], label_shift[r], label_exp[r], log_norm[r],
                                                    float(alpha[labels[i]]), gamma)
            if not math.isfinite(loss):
                flags[i] = 1
                continue
            scaled_loss[i] = s * loss
            if with_grad:
                scaled = z.dtype.type(-s * u / total)
                for j in range(k):
                    grad[i, j] = exps[r * k + j] * scaled
                grad[i, labels[i]] = z.dtype.type(s * u * q_y)


#: the positions of one tile of :func:`softmax_ce_columns`: its sums (float64, one per position) and a
#: tile's column of logits stay in L1 while each pass reads the tile one class at a time
COLUMN_TILE = 256
#: :func:`softmax_ce_columns` adds a position's terms in its dtype over this many classes at a time, the
#: chunks' sums in float64 (float64 sums throughout made the kernel 1.6x slower)
COLUMN_CHUNK = 32
#: :func:`softmax_ce_columns` runs its tiles in at most this many parallel blocks, each with its scratch
COLUMN_BLOCKS = 64


@numba.njit(**OPTIONS)
def softmax_ce_columns(z, labels, scale, smoothing, scaled_loss, grad, with_grad, flags):
    """:func:`softmax_ce_rows` for logits laid out ``[N, K, S]``: a class axis between others (PyTorch's
    ``(N, C, d1, ...)``, ``axis=1``), a row being a position ``(n, s)`` whose classes lie ``S`` apart.
    ``labels``, ``scaled_loss`` and ``flags`` are ``[N * S]`` in ``(n, s)`` order, ``scale`` too or
    ``[1]`` (one for every position: a 0-d plan scale costs no array of rows); ``grad``
    is ``[N, K, S]`` (not written without a gradient). The same arithmetic and precision rules as
    :func:`softmax_ce_rows` (the normaliser ``log1p`` of the terms below the max, the label's gradient
    from the other classes' mass), its sums in float64.

    Each pass runs over a tile of :data:`COLUMN_TILE` positions class by class, the positions in the
    inner loop: SIMD across positions whatever K, reading the logits where they lie (moving the class
    axis last copied the whole input first). A pass adds a class's term to each position's own sum,
    so no sum runs across a loop's iterations and its order is fixed (see the module's design note).
    Passes: the maxima; the sums of ``exp(z - max)`` (with a gradient, each ``exp`` kept where the
    gradient goes); the positions' losses (``log1p`` flat over the tile); the gradient, the kept exps
    scaled in place, then the labels' entries."""
    n, k, width = z.shape
    per_sample = (width + COLUMN_TILE - 1) // COLUMN_TILE
    tiles = n * per_sample
    blocks = min(tiles, COLUMN_BLOCKS)
    for b in prange(blocks):
        # scratch per block, not per tile: an allocation per tile cost as much as a small tile's work
        wide, narrow = np.empty((5, COLUMN_TILE)), np.empty((4, COLUMN_TILE), z.dtype)
        for t in range(b * tiles // blocks, (b + 1) * tiles // blocks):
            lo = (t % per_sample) * COLUMN_TILE
            _column_tile(z, labels, scale, smoothing, scaled_loss, grad, with_grad, flags, t // per_sample, lo,
                         min(width, lo + COLUMN_TILE) - lo, wide, narrow)


@numba.njit(**ROW)
def _column_tile(z, labels, scale, a, scaled_loss, grad, with_grad, flags, i, lo, count, wide, narrow):
    """:func:`softmax_ce_columns` on the ``count`` positions from ``lo`` of sample ``i``; ``wide`` and
    ``narrow`` are scratch rows (float64 and the logits' dtype) of at least ``count``."""
    k, width = z.shape[1], z.shape[2]
    per_position = scale.shape[0] > 1  # else one scale for every position
    zero, one = z.dtype.type(0), z.dtype.type(1)
    first = i * width + lo  # the tile's first position in (n, s) order
    below, ties, label_shift, every, shifted = (wide[0, :count], wide[1, :count], wide[2, :count],
                                                wide[3, :count], wide[4, :count])
    m, part, tied, inv = narrow[0, :count], narrow[1, :count], narrow[2, :count], narrow[3, :count]
    for q in range(count):
        below[q], ties[q], label_shift[q], shifted[q] = 0.0, 0.0, 0.0, 0.0
    m[:] = z[i, 0, lo:lo + count]
    for c in range(1, k):
        column = z[i, c, lo:lo + count]  # one class's logits at the tile's positions (1-d: a plain loop)
        for q in range(count):
            v = column[q]
            m[q] = v if v > m[q] else m[q]  # a NaN logit is flagged below: its exp makes `below` NaN
    # each position's sums in the dtype within a chunk of classes (not a range with a step: see SUM_CHUNK)
    for chunk in range((k + COLUMN_CHUNK - 1) // COLUMN_CHUNK):
        start = chunk * COLUMN_CHUNK
        for q in range(count):
            part[q], tied[q] = zero, zero
        for c in range(start, min(k, start + COLUMN_CHUNK)):
            column = z[i, c, lo:lo + count]
            if with_grad:  # the exps kept where the gradient goes (no sum runs along this loop: see above)
                kept = grad[i, c, lo:lo + count]
                for q in range(count):
                    d = column[q] - m[q]
                    e = vexp(d)
                    kept[q] = e
                    tie = d >= zero
                    part[q] += zero if tie else e  # a NaN logit's term is NaN
                    tied[q] += one if tie else zero
            else:
                for q in range(count):
                    d = column[q] - m[q]
                    e = vexp(d)
                    tie = d >= zero
                    part[q] += zero if tie else e
                    tied[q] += one if tie else zero
        for q in range(count):  # the chunks' sums in float64
            below[q] += float(part[q])
            ties[q] += float(tied[q])
    if a > 0:  # only then (a -inf logit makes it -inf, and 0 * -inf is NaN)
        for c in range(k):
            column = z[i, c, lo:lo + count]
            for q in range(count):
                shifted[q] += float(column[q] - m[q])
    for q in range(count):
        y, p = labels[first + q], first + q
        if y < 0 or y >= k or not (math.isfinite(m[q]) and math.isfinite(below[q])):
            flags[p] = 1
            below[q] = 0.0
            continue
        below[q] += ties[q] - 1.0  # the terms other than the max (the max itself is one of the ties)
        label_shift[q] = float(z[i, y, lo + q]) - float(m[q])
    for q in range(count):  # float64, flat over the tile: vectorised
        ties[q] = vlog1p(below[q])  # now the log normaliser
        every[q] = vexp(label_shift[q])  # the label's exp(z_y - max)
    for q in range(count):
        p = first + q
        if flags[p]:
            continue
        loss = ties[q] - (1.0 - a) * label_shift[q]
        if a > 0:  # only then: a -inf logit makes `shifted` -inf, and 0 * -inf is NaN
            loss -= (a / k) * shifted[q]
        if not math.isfinite(loss):
            flags[p] = 1
            continue
        s = scale[p if per_position else 0]
        scaled_loss[p] = 0.0 if s == 0 else s * loss
    if not with_grad:
        return
    offset = part  # now each position's s a / K
    for q in range(count):
        s = scale[first + q if per_position else 0]
        inv[q] = z.dtype.type(s / (1.0 + below[q]))
        offset[q] = z.dtype.type(s * a / k)
    for c in range(k):
        out = grad[i, c, lo:lo + count]
        for q in range(count):  # s = 0: exp * 0 - 0, an exact 0 (the exp of a finite row is finite)
            out[q] = out[q] * inv[q] - offset[q]
    for q in range(count):
        p = first + q
        if flags[p]:
            continue
        s = scale[p if per_position else 0]
        # at the label: p_y - 1 = -sum_{k != y} p_k, exact when p_y rounds to 1
        others = below[q] if label_shift[q] >= 0 else below[q] + (1.0 - every[q])
        grad[i, labels[p], lo + q] = z.dtype.type(0.0 if s == 0 else s * (a * (1.0 - 1.0 / k)
                                                                          - others / (1.0 + below[q])))


# The elementwise kernels index ``scale`` (``[R, C]``, ``[R, 1]`` or ``[1, 1]``) in the form that LLVM
# vectorises in both compiled forms, the parallel kernel and its serial twin (losskit.fused.serial_twin),
# which every call under 2^18 elements runs. They differ by kernel:
# - bce_logits_rows: the scale's row chosen once per row, and the row's loop written twice over one inlined
#   body, once with the column ``j`` and once with the column 0 (a literal in each). A select in the loop,
#   ``scale[i if per_row else 0, j if per_element else 0]``, left its twin without one packed instruction
#   (2.1-2.5 ms for 80,000 float32 elements against 0.5-0.7 ms); the column as ``j * column_step`` (a
#   run-time 1 or 0) was vectorised, but as 64-bit multiplies and a gather per element, 2.3x slower than the
#   literal columns (50000 x 1000 float32: 82 ms against 35.5, the same bits).
# - squared_error_rows: the select, which LLVM vectorises in both forms here. With ``j * column_step`` (as
#   in commit 5b3968e) its parallel kernel, which every call of 2^18 elements or more runs, had a third of
#   the packed instructions and ran 3-5x slower whatever the scale's shape (65,536 float32 elements on one
#   thread: 70-140 us against 20-29 us); its twin was vectorised in either form.
# Pinned by tests/test_fused.py::test_serial_twins_are_vectorised_where_their_parallel_kernels_are.


@numba.njit(**INLINE)
def _bce_row(z, y, pos_weight, scale_row, column_step, a, half_a, elements, grad, i, store, with_grad):
    """Row ``i`` of :func:`bce_logits_rows`: its sum of ``scale * l`` and a poison, nonzero or NaN where the
    row holds a non-finite logit or a target outside [0, 1] (NaN included), writing the elements and the
    gradient as asked. ``column_step`` is a literal 1 or 0 at each call (see the note above)."""
    zero, one = z.dtype.type(0), z.dtype.type(1)  # typed literals: a bare 0 would widen float32 to float64
    total = zero
    poison = zero
    for j in range(z.shape[1]):
        x = z[i, j]
        target = z.dtype.type(y[i, j])
        poison += x * zero + (zero if (target >= zero) & (target <= one) else one)  # the plan left it to us
        t = (one - a) * target + half_a
        e = vexp(-abs(x))
        soft = vlog1p_unit(e)
        pos = pos_weight[j] * t
        neg = (one - a) * (one - target) + half_a  # 1 - t formed so (smoothed_targets in losses/binary.py)
        # -log sigmoid(x) = max(-x, 0) + log1p(e); -log(1 - sigmoid(x)) = max(x, 0) + log1p(e)
        loss = pos * (max(-x, zero) + soft) + neg * (max(x, zero) + soft)
        s = scale_row[j * column_step]
        weighted = zero if s == zero else s * loss  # a weight-0 example adds 0, even if inf
        total += weighted
        if store:
            elements[i, j] = weighted
        if with_grad:
            inv = one / (one + e)
            s_pos = inv if x >= zero else e * inv  # sigmoid(x), to full precision
            s_neg = e * inv if x >= zero else inv  # sigmoid(-x)
            grad[i, j] = zero if s == zero else s * (neg * s_pos - pos * s_neg)
    return total, poison


@numba.njit(**OPTIONS)
def bce_logits_rows(z, y, pos_weight, scale, smoothing, scaled_loss, elements, grad, with_grad, flags):
    """Sigmoid BCE on ``z [R, C]`` with targets ``y [R, C]`` in [0, 1] (any real dtype; a row holding a target
    outside is flagged: the caller's plan does not check them).

    ``pos_weight [C]``; ``scale [R, C]`` (each element an example), ``[R, 1]`` (each row one
    example, its loss the sum over the row) or ``[1, 1]`` (one scale for all). ``scaled_loss[i]``
    (float64) is the row's sum of ``scale * l``; when ``elements`` is ``[R, C]`` it also receives
    each ``scale * l``.
    """
    n = z.shape[0]
    per_element = scale.shape[1] > 1
    per_row = scale.shape[0] > 1
    store = elements.shape[0] > 0
    a = z.dtype.type(smoothing)
    half_a = z.dtype.type(smoothing / 2)
    for i in prange(n):
        scale_row = scale[i if per_row else i - i]  # i - i: 0 of prange's type
        if per_element:
            total, poison = _bce_row(z, y, pos_weight, scale_row, 1, a, half_a, elements, grad, i, store, with_grad)
        else:
            total, poison = _bce_row(z, y, pos_weight, scale_row, 0, a, half_a, elements, grad, i, store, with_grad)
        row_total = float(total)
        if poison != 0 or not math.isfinite(row_total):
            flags[i] = 1
        scaled_loss[i] = row_total


@numba.njit(**OPTIONS)
def squared_error_rows(pred, target, scale, inv_count, scaled_loss, elements, grad, with_grad, flags):
    """Squared error on ``pred [R, C]``: ``l = inv_count * sum_j (pred - target)^2`` per example,
    ``grad = scale * 2 inv_count (pred - target)``. ``scale`` and outputs as :func:`bce_logits_rows`
    (``inv_count`` is 1/D for rows of D values, 1 when each element is an example)."""
    n, c = pred.shape
    per_element = scale.shape[1] > 1
    per_row = scale.shape[0] > 1
    store = elements.shape[0] > 0
    zero = pred.dtype.type(0)
    w = pred.dtype.type(inv_count)
    two_w = pred.dtype.type(2 * inv_count)
    for i in prange(n):
        total = zero
        poison = zero  # NaN where the row holds a NaN or infinite target (the plan does not look)
        for j in range(c):
            t = pred.dtype.type(target[i, j])
            poison += t * zero
            d = pred[i, j] - t
            s = scale[i if per_row else i - i, j if per_element else j - j]  # i - i: 0 of prange's type
            weighted = zero if s == zero else s * (w * (d * d))  # weight 0 adds 0, even if d^2 overflows
            total += weighted
            if store:
                elements[i, j] = weighted
            if with_grad:
                grad[i, j] = zero if s == zero else (s * two_w) * d
        row_total = float(total)
        if poison != zero or not math.isfinite(row_total):
            flags[i] = 1
        scaled_loss[i] = row_total
