"""Measured accuracy of losskit's losses and gradients against 50-digit mpmath.

    python benchmarks/accuracy.py            # prints a Markdown table
    python benchmarks/accuracy.py --paths    # the same grids on every path (tests/test_precision_paths.py)
    python benchmarks/accuracy.py --vmath    # only the kernels' exp/log/log1p/expm1/pow against mpmath
    python benchmarks/accuracy.py --catalogue  # every catalogue loss (tests/test_precision_catalogue.py)
    python benchmarks/accuracy.py --long-rows  # float32 rows of 1000 to 128256 classes, compiled and array API

For each loss and dtype: the maximum relative error, in units of the dtype's epsilon too,
over a grid of extreme inputs (|z| from 1e-8 to 1e4, p down to 1e-300, targets 0, 0.3, 1).
Exact values below the dtype's smallest normal number are compared in absolute terms (they
are not representable to relative accuracy). The inputs are rounded to the dtype first and the
reference is computed from the rounded values, so only losskit's own arithmetic is measured.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import losskit as lk  # noqa: E402
import mp_reference as mp  # noqa: E402

MAGNITUDES = [0.0] + [s * 10.0**e for e in range(-8, 5) for s in (1, 3)]
LOGITS = sorted({sign * m for m in MAGNITUDES for sign in (-1.0, 1.0) if m <= 1e4})
PROBS = [0.0, 1e-300, 1e-40, 1e-12, 1e-8, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-8, 1.0]
TARGETS = [0.0, 0.3, 1.0]


#: the largest error seen where the exact value is below the smallest normal number, in units of
#: the smallest subnormal (such values have no relative accuracy to speak of), by (function, dtype)
SUBNORMAL = {}


def _error(actual, exact, dtype, where=""):
    exact = float(exact)
    tiny = float(np.finfo(dtype).tiny)
    if abs(exact) < tiny:
        units = abs(float(actual) - exact) / float(np.finfo(dtype).smallest_subnormal)
        key = (where, np.dtype(dtype).name)
        SUBNORMAL[key] = max(SUBNORMAL.get(key, 0.0), units)
        return 0.0
    return abs(float(actual) - exact) / abs(exact)


def bce_logits(dtype, impl="xp"):
    z = np.array(LOGITS, dtype=dtype)
    worst_value = worst_grad = 0.0
    loss = lk.BinaryCrossEntropyWithLogits(pos_weight=1.5, reduction="none", impl=impl)
    for target in TARGETS:
        y = np.full_like(z, target)
        value, grad = loss(z, y), loss.grad(z, y)
        t = float(dtype(target))
        for zi, v, g in zip(z, value, grad, strict=True):
            worst_value = max(worst_value, _error(v, mp.bce_logits(float(zi), t, 1.5), dtype, f"bce {impl}"))
            worst_grad = max(worst_grad, _error(g, mp.bce_logits_grad(float(zi), t, 1.5), dtype, f"bce {impl}"))
    return worst_value, worst_grad


def bce_probs(dtype, impl="xp"):
    p = np.array(PROBS, dtype=dtype)
    worst = 0.0
    for target in TARGETS:
        value = lk.binary_cross_entropy(p, np.full_like(p, target), reduction="none", impl="xp")
        for pi, v in zip(p, value, strict=True):
            worst = max(worst, _error(v, mp.bce_probs(float(pi), float(dtype(target))), dtype))
    return worst, None


def softmax_rows(dtype):
    """The grid of softmax rows: extreme spans, near-ties, and 20 random rows of scale 1e-3 to 1e3."""
    rng = np.random.default_rng(0)
    rows = [[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2], [0.0, 1e-8, -1e-8], [700, -700, 0], [30, 30, -5]]
    rows += (rng.normal(size=(20, 3)) * 10.0 ** rng.integers(-3, 4, size=(20, 1))).tolist()
    return np.array(rows, dtype=dtype)


def softmax_ce(dtype, impl="xp"):
    rows = softmax_rows(dtype)
    worst_value = worst_grad = 0.0
    loss = lk.SoftmaxCrossEntropy(reduction="none", impl=impl)
    for label in range(3):
        labels = np.full(len(rows), label)
        value, grad = loss(rows, labels), loss.grad(rows, labels)
        for row, v, g in zip(rows, value, grad, strict=True):
            floats = [float(r) for r in row]
            worst_value = max(worst_value, _error(v, mp.softmax_ce(floats, label), dtype, f"softmax {impl}"))
            for gk, ek in zip(g, mp.softmax_ce_grad(floats, label), strict=True):
                # a gradient entry is p_k or p_k - 1: its error is judged against max(|exact|, eps)
                scale = max(abs(float(ek)), float(np.finfo(dtype).eps))
                worst_grad = max(worst_grad, abs(float(gk) - float(ek)) / scale)
    return worst_value, worst_grad


def vmath_ulps(dtype):
    """Max error in ulps (the dtype's spacing at the exact value, subnormal spacing included) of the
    kernels' vexp from log(smallest subnormal) to log(max), and of vlog1p_unit over [tiny, 1], at
    20001 points each."""
    import mpmath
    import numba

    from losskit.fused.vmath import vexp, vlog1p_unit

    @numba.njit
    def evaluate(x, out_exp, out_log1p, one):
        for i in range(x.size):  # (`one` of x's dtype: `x[i] * 0 + 1` is float64, which ran float64's vlog1p_unit)
            out_exp[i] = vexp(x[i])
            out_log1p[i] = vlog1p_unit(abs(x[i]) if abs(x[i]) <= one else one)

    info = np.finfo(dtype)
    low = float(np.log(info.smallest_subnormal))
    x = np.concatenate([np.linspace(low, 88.0 if dtype == np.float32 else 709.0, 10001),
                        -np.logspace(np.log10(info.tiny), 0, 10000)]).astype(dtype)
    u = np.logspace(np.log10(info.tiny), 0, 20001).astype(dtype)
    out_exp, out_log1p, dummy = np.empty_like(x), np.empty_like(u), np.empty_like(u)
    evaluate(x, out_exp, np.empty_like(x), dtype(1))
    evaluate(u, dummy, out_log1p, dtype(1))

    def ulps(actual, exact):
        exact = mpmath.mpf(exact)
        spacing = float(np.spacing(dtype(abs(float(exact)))))
        return float(abs(mpmath.mpf(float(actual)) - exact)) / spacing

    worst_exp = max(ulps(a, mpmath.exp(mpmath.mpf(float(v)))) for v, a in zip(x, out_exp, strict=True))
    worst_log1p = max(ulps(a, mpmath.log1p(mpmath.mpf(float(v)))) for v, a in zip(u, out_log1p, strict=True))
    return worst_exp, worst_log1p


def vmath_more_ulps(dtype, points=4001):
    """Max error in ulps of the formula kernels' vlog (smallest subnormal to max), vlog1p (-1 to max),
    vexpm1 (-1.2 log(max) to log(max), and tiny magnitudes) and vpow (bases over the normal range,
    exponents in [-2, 2], [-8, 8], [-30, 30]), ``points`` points each (pow: a quarter per range)."""
    import mpmath
    import numba

    from losskit.fused.vmath import vexpm1, vlog, vlog1p, vpow

    @numba.njit
    def evaluate(x, fn_index, out):
        for i in range(x.size):
            out[i] = vlog(x[i]) if fn_index == 0 else vlog1p(x[i]) if fn_index == 1 else vexpm1(x[i])

    @numba.njit
    def evaluate_pow(x, y, out):
        for i in range(x.size):
            out[i] = vpow(x[i], y[i])

    info = np.finfo(dtype)
    tiny, smallest, top = float(info.tiny), float(info.smallest_subnormal), float(info.max)
    high = float(np.log(info.max))
    grids = {
        "vlog": np.concatenate([np.logspace(np.log10(smallest), np.log10(top), points), np.linspace(0.5, 2, points)]),
        "vlog1p": np.concatenate([-1 + np.logspace(-info.precision - 1, -0.5, points // 4),
                                  -np.logspace(np.log10(tiny), -0.5, points // 2),
                                  np.logspace(np.log10(smallest), np.log10(top), points)]),
        "vexpm1": np.concatenate([np.linspace(-1.2 * high, high, points),
                                  np.logspace(np.log10(smallest), 0, points // 2),
                                  -np.logspace(np.log10(smallest), 0, points // 2)]),
    }
    exact = {"vlog": mpmath.log, "vlog1p": mpmath.log1p, "vexpm1": mpmath.expm1}

    def ulps(actual, value):
        if abs(value) > top:
            return 0.0 if np.isinf(actual) else np.inf
        spacing = float(np.spacing(dtype(abs(float(value))))) if value != 0 else smallest
        return float(abs(mpmath.mpf(float(actual)) - value)) / spacing

    worst = {}
    for index, (name, grid) in enumerate(grids.items()):
        x = grid.astype(dtype)
        x = x[x > -1]
        out = np.empty_like(x)
        evaluate(x, index, out)
        worst[name] = max(ulps(a, exact[name](mpmath.mpf(float(v)))) for v, a in zip(x, out, strict=True))
    rng = np.random.default_rng(0)
    for bound in (2, 8, 30):
        x = np.exp(rng.uniform(np.log(tiny), np.log(top), points // 4)).astype(dtype)
        y = rng.uniform(-bound, bound, points // 4).astype(dtype)
        out = np.empty_like(x)
        evaluate_pow(x, y, out)
        worst[f"vpow, y in [-{bound}, {bound}]"] = max(ulps(a, mpmath.power(mpmath.mpf(float(b)), mpmath.mpf(float(e))))
                                             for b, e, a in zip(x, y, out, strict=True))
    return worst


#: the documented bounds (docs/losses.md), in eps: a measurement above them fails the run
VALUE_BOUND, GRAD_BOUND = 4.0, 8.0


def paths_table() -> None:
    """Max error in eps on every path that consumes a call plan, from the functions that
    tests/test_precision_paths.py holds to the documented bounds."""
    import importlib.util

    if importlib.util.find_spec("jax") is not None:  # float64 on the XLA path, as the tests' conftest sets
        import jax

        jax.config.update("jax_enable_x64", True)
    import losskit as lk
    import test_precision_paths as paths

    print("| path | dtype | BCE-logits loss | gradient | softmax CE loss | gradient |")
    print("|---|---|---|---|---|---|")
    for path in sorted(paths.PATHS):
        for dtype in paths.DTYPES:
            sub = paths._subnormals(path, dtype)
            z, values, grads = paths._bce_reference(dtype)
            loss = lk.BinaryCrossEntropyWithLogits(pos_weight=paths.POS_WEIGHT, reduction="none")
            bce = [0.0, 0.0]
            for target, exact_value, exact_grad in zip(TARGETS, values, grads, strict=True):
                value, grad = paths.PATHS[path](loss, z, np.full_like(z, target))
                bce = [max(bce[0], paths._check(value, exact_value, dtype, VALUE_BOUND, subnormals=sub)),
                       max(bce[1], paths._check(grad, exact_grad, dtype, GRAD_BOUND, subnormals=sub))]
            rows, values, grads = paths._softmax_reference(dtype)
            loss = lk.SoftmaxCrossEntropy(reduction="none")
            ce = [0.0, 0.0]
            for label in range(3):
                value, grad = paths.PATHS[path](loss, rows, np.full(len(rows), label))
                ce = [max(ce[0], paths._check(value, values[label], dtype, VALUE_BOUND, subnormals=sub)),
                      max(ce[1], paths._check(grad, [g for row in grads[label] for g in row], dtype, GRAD_BOUND,
                                              floor_scale=True))]
            print(f"| {path} | {np.dtype(dtype).name} | {bce[0]:.1f} | {bce[1]:.1f} | {ce[0]:.1f} | {ce[1]:.1f} |")


def catalogue_table() -> None:
    """Max error in eps of every catalogue loss on the array-API path and the compiled kernel (NumPy),
    over the whole grid of tests/test_precision_catalogue.py, the Known misses included (marked *)."""
    from losskit.losses import _compiled

    _compiled.ANSWER_WHILE_COMPILING = 0  # the kernel answers every call, none the reference while it compiles
    import test_precision_catalogue as cat

    print("| loss | path | dtype | value (eps) | gradient (eps) | subnormal units | outside the Known misses |")
    print("|---|---|---|---|---|---|---|")
    for case in cat.CASES:
        for path in ("xp", "fused"):
            if path == "fused" and not cat.has_kernel(case.name):
                continue
            for dtype in cat.DTYPES:
                worst = cat.measure(case.name, path, dtype, "all")
                known = any(k.applies(path, dtype) for k in case.known) and not cat.within(worst)
                if not known and not cat.within(worst):
                    raise AssertionError(f"{case.name} {path} {np.dtype(dtype).name}: above the documented "
                                         "bounds, and no Known miss covers it")
                held = ""
                if known:
                    regular = cat.measure(case.name, path, dtype, "regular")
                    held = (f"{regular.value:.3g}, {regular.grad:.3g}, {regular.subnormal:.2g}"
                            if regular.examples else "(all points)")
                print(f"| {case.name}{' *' if known else ''} | {'compiled' if path == 'fused' else 'array API'} | "
                      f"{np.dtype(dtype).name} | {worst.value:.3g} | {worst.grad:.3g} | {worst.subnormal:.2g} | "
                      f"{held} |")


def vmath_table() -> None:
    print("| kernel function | dtype | max error (ulps), whole domain |")
    print("|---|---|---|")
    for dtype in (np.float64, np.float32):
        worst_exp, worst_log1p = vmath_ulps(dtype)
        print(f"| vexp | {np.dtype(dtype).name} | {worst_exp:.2f} |")
        print(f"| vlog1p_unit | {np.dtype(dtype).name} | {worst_log1p:.2f} |")
        for name, worst in vmath_more_ulps(dtype).items():
            print(f"| {name} | {np.dtype(dtype).name} | {worst:.2f} |")


def long_rows_table() -> None:
    """The compiled float32 softmax CE on long rows (8 rows of N(0, 16) logits, 5 seeds) against the
    float64 reference of the same float32 input: the worst relative error of the loss, in eps; then the
    class-axis losses with probability targets or a teacher's logits (:data:`LONG_ROW_CASES`, the rows of
    :func:`_long_rows`, 3 seeds), compiled and array-API: the worst relative error of the value, and of
    the gradient relative to its row's largest exact entry (max-abs), in eps."""
    from losskit.losses import _compiled

    _compiled.ANSWER_WHILE_COMPILING = 0  # the kernel answers every call, none the reference while it compiles
    eps = float(np.finfo(np.float32).eps)
    print("| K | worst relative error of the float32 loss (eps) | of the gradient, to its row's largest entry (eps) |")
    print("|---|---|---|")
    for k in (1000, 32000, 128256):
        worst = worst_grad = 0.0
        for seed in range(5):
            rng = np.random.default_rng(seed)
            z, y = (rng.normal(size=(8, k)) * 4).astype(np.float32), rng.integers(0, k, 8)
            value, grad = lk.SoftmaxCrossEntropy(impl="fused", reduction="none").value_and_grad(z, y)
            exact, exact_grad = lk.SoftmaxCrossEntropy(impl="xp", reduction="none").value_and_grad(
                z.astype(np.float64), y)
            worst = max(worst, float(np.max(np.abs(value - exact) / np.abs(exact))) / eps)
            worst_grad = max(worst_grad, float(np.max(np.abs(grad - exact_grad).max(axis=-1)
                                                      / np.abs(exact_grad).max(axis=-1))) / eps)
        print(f"| {k} | {worst:.1f} | {worst_grad:.1f} |")
    # the class-axis kernels with probability targets (or a teacher's logits)
    print()
    print("| loss, probability targets | K | compiled value (eps) | compiled gradient (eps) "
          "| array API value (eps) | array API gradient (eps) |")
    print("|---|---|---|---|---|---|")
    for label, cls, options, kind in LONG_ROW_CASES:
        for k in (1000, 32000, 128256):
            worst = {"fused": [0.0, 0.0], "xp": [0.0, 0.0]}
            for seed in range(3):
                z, target = _long_rows(np.random.default_rng(seed), k, kind)
                loss_of = functools.partial(cls, reduction="none", **options)
                exact, exact_grad = loss_of(impl="xp").value_and_grad(z.astype(np.float64), target.astype(np.float64))
                for impl, errors in worst.items():
                    value, grad = loss_of(impl=impl).value_and_grad(z, target)
                    errors[0] = max(errors[0], float(np.max(np.abs(value - exact) / np.abs(exact))) / eps)
                    errors[1] = max(errors[1], float(np.max(np.abs(grad - exact_grad).max(axis=-1)
                                                            / np.abs(exact_grad).max(axis=-1))) / eps)
            print(f"| {label} | {k} | {worst['fused'][0]:.1f} | {worst['fused'][1]:.1f} "
                  f"| {worst['xp'][0]:.1f} | {worst['xp'][1]:.1f} |")


#: the class-axis losses whose row sums run over a target row: (label, class, options, target kind)
LONG_ROW_CASES = [
    *((f"kl_divergence, smoothing {a}", lk.KLDivergence, {"label_smoothing": a}, "probs") for a in (0.0, 0.1)),
    *((f"poly_cross_entropy, smoothing {a}", lk.PolyCrossEntropy, {"label_smoothing": a},
       "probs") for a in (0.0, 0.1)),
    *((f"softmax_focal_loss, gamma {g}, smoothing {a}", lk.SoftmaxFocalLoss,
       {"gamma": g, "label_smoothing": a}, "probs")
      for a in (0.0, 0.1) for g in (0.0, 0.5, 2.0)),
    *((f"distillation_loss, T {t}", lk.DistillationLoss, {"temperature": t}, "teacher") for t in (1.0, 2.0, 0.5)),
    *((f"js_divergence, beta {b}", lk.JSDivergence, {"beta": b}, "teacher") for b in (0.0, 0.5, 1.0)),
]


def _long_rows(rng, k, kind):
    """Three float32 rows of N(0, 16) logits and their targets: probabilities Dirichlet(0.1), Dirichlet(1)
    and a near one-hot (0.999 on one class, the rest spread), or teacher logits N(0, 16), N(0, 1) and
    N(0, 1) with one class 25 above."""
    z = (rng.normal(size=(3, k)) * 4).astype(np.float32)
    if kind == "teacher":
        t = rng.normal(size=(3, k)) * np.array([[4.0], [1.0], [1.0]])
        t[2, rng.integers(k)] += 25
        return z, t.astype(np.float32)
    near = rng.dirichlet(np.ones(k)) * 1e-3
    near[rng.integers(k)] += 1 - 1e-3
    return z, np.stack([rng.dirichlet(np.full(k, 0.1)), rng.dirichlet(np.ones(k)), near]).astype(np.float32)


def main() -> None:
    if "--long-rows" in sys.argv:
        long_rows_table()
        return
    if "--paths" in sys.argv:
        paths_table()
        return
    if "--catalogue" in sys.argv:
        catalogue_table()
        return
    if "--vmath" in sys.argv:
        vmath_table()
        return
    print("| loss | path | dtype | max rel. error, loss | in eps | max rel. error, gradient | in eps |")
    print("|---|---|---|---|---|---|---|")
    for name, fn, impls in (("binary_cross_entropy_with_logits", bce_logits, ("xp", "fused")),
                            ("binary_cross_entropy", bce_probs, ("xp",)),
                            ("softmax_cross_entropy", softmax_ce, ("xp", "fused"))):
        for impl in impls:
            for dtype in (np.float64, np.float32):
                value, grad = fn(dtype, impl)
                eps = float(np.finfo(dtype).eps)
                assert value <= VALUE_BOUND * eps and (grad is None or grad <= GRAD_BOUND * eps), \
                    f"{name} {impl} {np.dtype(dtype).name}: above the documented bounds"
                grad_cells = ("n/a", "n/a") if grad is None else (f"{grad:.2e}", f"{grad / eps:.1f}")
                print(f"| {name} | {'compiled' if impl == 'fused' else 'array API'} | {np.dtype(dtype).name} | "
                      f"{value:.2e} | {value / eps:.1f} | {grad_cells[0]} | {grad_cells[1]} |")
    print()
    print("Exact values below the smallest normal number, largest absolute error in units of the smallest "
          "subnormal: " + ", ".join(f"{k[0]} {k[1]}: {v:.1f}" for k, v in sorted(SUBNORMAL.items())))
    print()
    vmath_table()


if __name__ == "__main__":
    main()
