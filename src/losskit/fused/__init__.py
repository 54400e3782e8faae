"""Fast paths: compiled CPU kernels for NumPy input, and memory-lean fused linear + CE.

``fast_path`` is the single entry the core's ``Loss`` calls; it returns ``None`` when the
kernels do not handle a call, so the array-API path runs instead.
"""

from __future__ import annotations


def fast_path(loss, xp, input, target, weight, normalizer, order):
    """``(value, grad, hess)`` from a compiled kernel, or ``None`` to use the array-API path.

    Filled in by the kernels work (issue 4); until then every call takes the array-API path.
    """
    if loss.impl == "fused":
        from .._checks import fail

        raise fail("impl", '"auto" or "xp" (no compiled kernel handles this call)', '"fused"')
    return None
