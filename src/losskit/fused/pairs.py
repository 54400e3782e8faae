r"""Compiled kernels of the losses whose example is a few units on the last axis: Gaussian NLL
(mean, log-variance) and the quantile (pinball) loss, one target per example.

A leaf as the kernels of :mod:`losskit.fused.kernels` (their flags convention, options and precision
rules). Arguments common to both: ``pred [N, U]`` (C-contiguous), ``target [N]`` in ``pred``'s
dtype, ``scale`` the reduction's per-example scale, ``[N]`` or ``[1]`` (one for all), ``block`` the
examples of a block. The examples are cut in blocks, parallel over the blocks (the caller runs a
small call on one thread). Outputs: ``scaled_loss [B]`` (float64), each block's sum of ``scale * l``
(0 where the scale is 0, even if ``l`` is inf); ``elements [N]``, each ``scale * l``, when it is not
empty (``reduction="none"``); ``grad [N, U]``, ``scale * dl/dpred``, when ``with_grad`` (it may be
``pred`` itself in the parallel kernel: a block is read before it is written; a serial twin is
compiled ``noalias`` and gets a buffer of its own); ``flags [B]``, 1 for a block holding a
non-finite input, loss or gradient (the reference then answers the call, with its exact limits).

Design note: the two kernels lay out their loop differently, each the faster of what was measured
(float32, AVX2). Gaussian NLL copies a block's pairs into two contiguous rows of scratch (in L1),
runs one flat loop over them with its ``exp`` vectorised, and copies the gradient's rows back: LLVM
did not vectorise a loop that reads ``pred[i, 0], pred[i, 1]`` where they lie, and its ``exp`` then
ran as scalar code, 2.7 times as long (25M pairs, 2 threads). That loop fills the gradient's scratch
even without ``with_grad``: it holds no branch (LLVM does not unswitch a loop that long). The
quantile loss has no ``exp``: its loop reads the Q units where they lie, ``flat[Q k + j]``, with
unsigned indices (numba wraps a signed index that may be negative, and LLVM then sees no stride)
and with Q, the kind of scale and the outputs as constants of the machine code (one kernel per
variant, compiled on first use, as :func:`losskit.fused.formula.row_kernel` does): LLVM then loads
the Q units of 8 examples as Q vectors and shuffles them apart, about 4 times as fast as the same
loop with signed indices and a run-time Q (1M x 3, one thread). A block's sum is taken in the
input's dtype across the SIMD lanes and added in float64, as the row kernels do.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange, uint64

from .kernels import INLINE, OPTIONS
from .vmath import vexp

__all__ = ["gaussian_nll_blocks", "quantile_blocks"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@numba.njit(**INLINE)
def _split(pairs):
    """``pairs [n, 2]`` as two contiguous rows of scratch: its first and its second column."""
    first = np.empty(pairs.shape[0], pairs.dtype)
    second = np.empty(pairs.shape[0], pairs.dtype)
    for k in range(pairs.shape[0]):
        first[k] = pairs[k, 0]
        second[k] = pairs[k, 1]
    return first, second


@numba.njit(**INLINE)
def _join(first, second, pairs):
    """``pairs[:, 0] = first``, ``pairs[:, 1] = second``: a block's gradient back in the input's layout."""
    for k in range(pairs.shape[0]):
        pairs[k, 0] = first[k]
        pairs[k, 1] = second[k]


@numba.njit(**INLINE)
def _block_scale(scale, start, stop):
    """The block's scales, one per example: a view of ``scale`` or, when one serves all, scratch
    filled with it (a loop that picks between the two per example is not vectorised)."""
    if scale.shape[0] > 1:
        return scale[start:stop]
    return np.full(stop - start, scale[0], scale.dtype)


@numba.njit(**INLINE)
def _weigh(losses, scales):
    """``losses`` scaled in place (0 where the scale is 0, even for an inf loss) and their sum, NaN
    when a loss is not finite (it is flagged)."""
    zero = losses.dtype.type(0)
    total = zero
    poison = zero
    for k in range(losses.shape[0]):
        s = scales[k]
        loss = losses[k]
        poison += loss * zero
        weighted = zero if s == zero else s * loss
        losses[k] = weighted
        total += weighted
    return total + poison


@numba.njit(**OPTIONS)
def gaussian_nll_blocks(pred, target, scale, block, scaled_loss, elements, grad, with_grad, flags):
    r"""Gaussian NLL of ``pred [N, 2]`` = (mean m, log-variance s): :math:`l = \frac12 (s + r^2) +
    \frac12 \log 2\pi`, :math:`r = (y - m) e^{-s/2}` (so neither :math:`e^{-s}` nor :math:`(y - m)^2`
    overflows alone); gradient :math:`(-r e^{-s/2},\; \frac12 (1 - r^2))`, into the scratch even
    without ``with_grad`` (a branch in the loop would stop its vectorisation)."""
    n = target.shape[0]
    real = pred.dtype.type
    zero, half, one = real(0), real(0.5), real(1)  # typed literals: a bare 0.5 would widen float32
    constant = real(_HALF_LOG_2PI)
    for b in prange(scaled_loss.shape[0]):
        start = b * block
        stop = min(start + block, n)
        mean, log_var = _split(pred[start:stop])
        y = target[start:stop]
        scales = _block_scale(scale, start, stop)
        losses = np.empty(stop - start, pred.dtype)
        poison = zero
        for k in range(stop - start):
            m = mean[k]
            v = log_var[k]
            root = vexp(-half * v)  # e^(-s/2): finite for s > -177 (float32), -1419 (float64)
            r = (y[k] - m) * root
            losses[k] = half * (v + r * r) + constant
            s = scales[k]
            g_mean = zero if s == zero else s * (-r * root)  # a weight-0 example's gradient is 0
            g_var = zero if s == zero else s * (half * (one - r * r))
            poison += g_mean * zero + g_var * zero  # NaN for a non-finite gradient
            mean[k] = g_mean
            log_var[k] = g_var
        total = _weigh(losses, scales) + poison
        if elements.shape[0]:
            elements[start:stop] = losses
        if with_grad:
            _join(mean, log_var, grad[start:stop])
        block_total = float(total)
        if not math.isfinite(block_total):
            flags[b] = 1
        scaled_loss[b] = block_total


@numba.njit(**INLINE)
def _pinball(flat, y, quantiles, k, width):
    """``sum_j max(q_j e_j, (q_j - 1) e_j)``, ``e_j = y - pred[k, j]``: in j's order for a few
    quantiles; for 8 or more LLVM may reassociate it (fastmath), within an ulp of the reference's."""
    real = flat.dtype.type
    one = real(1)
    loss = real(0)
    for j in range(width):
        q = quantiles[j]
        e = y - flat[k * width + j]
        loss += max(q * e, (q - one) * e)  # q - 1 and 1 - q in the dtype, as the reference's
    return loss


@functools.cache
def quantile_blocks(units: int, per_example: bool, with_grad: bool, store: bool):
    r"""The quantile kernel for ``units`` quantiles, a scale per example or one for all, with or without
    the gradient and the per-example values (constants of its machine code, as in
    :func:`losskit.fused.formula.row_kernel`)::

        kernel(pred, target, quantiles, scale, block, scaled_loss, elements, grad, flags)

    Pinball loss of ``pred [N, Q]`` against one target per example, summed over the quantiles
    ``quantiles [Q]`` (in ``pred``'s dtype): :math:`l = \sum_j \max(q_j e_j, (q_j - 1) e_j)`,
    :math:`e_j = y - \hat y_j`; gradient :math:`-q_j` where :math:`e_j > 0`, else :math:`1 - q_j`.
    The sum over j runs in j's order (for 8 or more quantiles as LLVM reassociates it, within an ulp
    of the reference's). The block's sum runs in a loop that writes
    nothing, the gradient and the per-example values in one that sums nothing (docs/fused.md: a loop
    that does both sums in another order behind LLVM's overlap check, so the value alone and
    ``value_and_grad`` differed in the last bit)."""
    width = uint64(units)

    def kernel(pred, target, quantiles, scale, block, scaled_loss, elements, grad, flags):
        n = target.shape[0]
        flat, grad_flat = pred.reshape(-1), grad.reshape(-1)
        real = pred.dtype.type
        zero, one = real(0), real(1)
        every = scale[0]
        for b in prange(scaled_loss.shape[0]):
            start = b * block
            stop = min(start + block, n)
            # the block's sum first: the gradient may be written into the predictions themselves (out=x on a
            # parallel call), and a sum read after it read the gradients (a mean 29% off)
            total = zero
            poison = zero
            for k in range(uint64(start), uint64(stop)):  # unsigned: no wrap-around of a negative index
                s = scale[k] if per_example else every
                loss = _pinball(flat, target[k], quantiles, k, width)
                total += zero if s == zero else s * loss  # a weight-0 example adds 0, even if inf
                poison += loss * zero  # NaN for a non-finite input or target
            block_total = float(total + poison)
            if not math.isfinite(block_total):
                flags[b] = 1
            scaled_loss[b] = block_total
            if with_grad or store:
                for k in range(uint64(start), uint64(stop)):  # each example read before its gradient is written
                    s = scale[k] if per_example else every
                    if store:
                        elements[k] = zero if s == zero else s * _pinball(flat, target[k], quantiles, k, width)
                    if with_grad:
                        y = target[k]
                        for j in range(width):
                            q = quantiles[j]
                            e = y - flat[k * width + j]
                            grad_flat[k * width + j] = zero if s == zero else s * (-q if e > zero else one - q)

    return numba.njit(kernel, **OPTIONS)
