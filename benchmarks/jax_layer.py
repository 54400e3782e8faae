"""``losskit.jax`` against optax (where optax has the loss) and the formula in ``jnp``, under ``jit``.

    python -m benchmarks.jax_layer                   # default sizes (8M elements; 256 x 32000 rows)
    python -m benchmarks.jax_layer --smoke           # tiny sizes, one repeat: checks the harness
    python -m benchmarks.jax_layer --only huber_loss softmax_cross_entropy
    python -m benchmarks.jax_layer --rows 4096 32000 # the class-axis losses at other rows
    python -m benchmarks.jax_layer --markdown FILE   # also write the table to FILE

Every implementation is ``jax.jit(jax.value_and_grad(f))`` on the same float32 arrays, ``f`` the
mean loss. Before timing, each one's value and gradient are checked against the peer's formula run
in float64 on the same inputs (optax or ``jnp``, never losskit: the check is independent of the
code it checks); a disagreement raises. Then the implementations run alternately, ``--repeats``
rounds after a warm-up round (which compiles), and the table gives median milliseconds and the
ratio peer / losskit.jax (>= 1: losskit.jax no slower). The machine may be shared: compare ratios
within one run, not milliseconds across runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import losskit as lk

from ._report import write_markdown

ELEMENTS = 8_000_000
ROWS = (256, 32000)
SMOKE_ELEMENTS, SMOKE_ROWS = 4096, (16, 300)
LABELS = 1000  # the label axis of the multi-label losses: rows of 1000 labels


def _sign(y):
    return 2 * y - 1


def peers(jax, jnp, optax):
    """name -> (the peer's mean loss f(z, y), "optax" or "jnp", the losskit options it matches)."""
    L = optax.losses

    def asl(z, y):  # the reference implementation's arithmetic (clamped logs), differentiated
        p = jax.nn.sigmoid(z)
        xs_neg = jnp.minimum(1 - p + 0.05, 1.0)
        loss = y * jnp.log(jnp.maximum(p, 1e-8)) + (1 - y) * jnp.log(jnp.maximum(xs_neg, 1e-8))
        pt = p * y + xs_neg * (1 - y)
        return -(loss * (1 - pt) ** (1.0 * y + 4.0 * (1 - y))).sum(-1).mean()

    def softmax_focal(z, y):
        log_p = jax.nn.log_softmax(z)
        log_p_y = jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
        return (-(1 - jnp.exp(log_p_y)) ** 2 * log_p_y).mean()

    def one_hot(y, z):
        return jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)

    return {
        "softmax_cross_entropy": (lambda z, y: L.softmax_cross_entropy_with_integer_labels(z, y).mean(), "optax", {}),
        "binary_cross_entropy_with_logits": (lambda z, y: L.sigmoid_binary_cross_entropy(z, y).mean(), "optax", {}),
        "multilabel_cross_entropy": (lambda z, y: L.sigmoid_binary_cross_entropy(z, y).sum(-1).mean(), "optax",
                                     {}),
        "mean_squared_error": (lambda z, y: L.squared_error(z, y).mean(), "optax", {}),
        "huber_loss": (lambda z, y: L.huber_loss(z, y).mean(), "optax", {}),
        "smooth_l1_loss": (lambda z, y: L.huber_loss(z, y).mean(), "optax", {}),
        "log_cosh_loss": (lambda z, y: L.log_cosh(z, y).mean(), "optax", {}),
        "hinge_loss": (lambda z, y: L.hinge_loss(z, _sign(y)).mean(), "optax", {}),
        "sigmoid_focal_loss": (lambda z, y: L.sigmoid_focal_loss(z, y, alpha=None, gamma=2.0).mean(), "optax", {}),
        "multilabel_sigmoid_focal_loss": (lambda z, y: L.sigmoid_focal_loss(z, y, alpha=None).sum(-1).mean(),
                                          "optax", {}),
        "kl_divergence": (lambda z, y: L.kl_divergence(jax.nn.log_softmax(z), y).mean(), "optax", {}),
        "poly_cross_entropy": (lambda z, y: L.poly_loss_cross_entropy(z, one_hot(y, z), epsilon=1.0).mean(),
                               "optax", {"epsilon": 1.0}),
        "multiclass_hinge_loss": (lambda z, y: L.multiclass_hinge_loss(z, y).mean(), "optax", {}),
        "absolute_error": (lambda z, y: jnp.abs(z - y).mean(), "jnp", {}),
        "pseudo_huber_loss": (lambda z, y: (jnp.sqrt(1 + (z - y) ** 2) - 1).mean(), "jnp", {}),
        "poisson_deviance": (lambda z, y: (2 * (jax.scipy.special.xlogy(y, y) - y * z - y + jnp.exp(z))).mean(),
                             "jnp", {}),
        "gamma_deviance": (lambda z, y: (2 * (z - jnp.log(y) + y * jnp.exp(-z) - 1)).mean(), "jnp", {}),
        "tweedie_deviance": (lambda z, y: (2 * (-4 * jnp.sqrt(y) + 2 * y * jnp.exp(-0.5 * z)
                                                + 2 * jnp.exp(0.5 * z))).mean(), "jnp", {"power": 1.5}),
        "squared_hinge_loss": (lambda z, y: (jnp.maximum(1 - _sign(y) * z, 0) ** 2).mean(), "jnp", {}),
        "exponential_loss": (lambda z, y: (y * jnp.exp(-z) + (1 - y) * jnp.exp(z)).mean(), "jnp", {}),
        "multilabel_hinge_loss": (lambda z, y: jnp.maximum(1 - _sign(y) * z, 0).sum(-1).mean(), "jnp", {}),
        "multilabel_squared_hinge_loss": (lambda z, y: (jnp.maximum(1 - _sign(y) * z, 0) ** 2).sum(-1).mean(),
                                          "jnp", {}),
        "asymmetric_loss": (asl, "jnp", {}),
        "softmax_focal_loss": (softmax_focal, "jnp", {}),
    }


def _inputs(name, n, rows, rng):
    cls = lk.REGISTRY[name][0]
    per_label = getattr(cls, "over_last_axis", None) == "sum" or name == "multilabel_cross_entropy"
    if cls.reduces_last_axis and not per_label:  # a row over the classes: integer labels
        z = (3 * rng.normal(size=rows)).astype(np.float32)
        labels = rng.integers(0, rows[1], size=rows[0])
        if name == "kl_divergence":  # a soft target: a softmax of other logits
            t = rng.normal(size=rows)
            p = np.exp(t - t.max(-1, keepdims=True))
            return z, (p / p.sum(-1, keepdims=True)).astype(np.float32)
        return z, labels.astype(np.int32)
    shape = (n // LABELS, LABELS) if per_label else (n,)
    z = rng.normal(size=shape).astype(np.float32)
    # off the margin losses' kinks (|z| = 1) and Huber's (|z - y| = 1), where peers may take another subgradient
    z = np.where(np.abs(np.abs(z) - 1) < 1e-3, z + np.float32(0.01), z).astype(np.float32)
    if getattr(cls, "target", "binary") in ("binary", "sign"):
        y = (rng.uniform(size=shape) > 0.5).astype(np.float32)
    elif cls.target == "value" and cls.link is not lk.LOG:
        y = rng.normal(size=shape).astype(np.float32)
        y = np.where(np.abs(np.abs(z - y) - 1) < 1e-3, y + np.float32(0.01), y).astype(np.float32)
    else:
        y = rng.gamma(2.0, size=shape).astype(np.float32) + (cls.target == "positive") * np.float32(0.1)
    return z, y


def implementations(name, jax, jnp, optax):
    """label -> jitted value_and_grad(z, y), and the peer's formula (for the float64 check)."""
    import losskit.jax as lj

    formula, kind, options = peers(jax, jnp, optax)[name]
    ours = lj.loss_fn(lk.REGISTRY[name][0](**options))
    return {kind: jax.jit(jax.value_and_grad(formula)),
            "losskit.jax": jax.jit(jax.value_and_grad(lambda z, y: ours(z, y)))}, formula


def check_agreement(name, impls, formula, z, y, jax, jnp):
    """Each implementation's float32 value and gradient against the peer's formula in float64."""
    with jax.enable_x64(True):
        wide = jax.jit(jax.value_and_grad(formula))(jnp.asarray(z, jnp.float64),
                                                    jnp.asarray(y, jnp.float64 if y.dtype.kind == "f" else y.dtype))
        value, grad = float(wide[0]), np.asarray(wide[1], dtype=np.float64)
    for label, fn in impls.items():
        got_value, got_grad = fn(jnp.asarray(z), jnp.asarray(y))
        scale = float(np.max(np.abs(grad))) or 1.0
        value_error = abs(float(got_value) - value) / max(abs(value), 1e-30)
        grad_error = float(np.max(np.abs(np.asarray(got_grad, dtype=np.float64) - grad))) / scale
        tol = 1e-3 if name == "asymmetric_loss" and label != "losskit.jax" else 1e-4  # the peer's clamped logs
        if not (value_error < tol and grad_error < tol):
            raise AssertionError(f"{name}: {label} disagrees with the float64 peer (value {value_error:.2e}, "
                                 f"gradient {grad_error:.2e} relative)")


def time_loss(name, n, rows, repeats, rng):
    import jax
    import jax.numpy as jnp
    import optax

    z, y = _inputs(name, n, rows, rng)
    impls, formula = implementations(name, jax, jnp, optax)
    check_agreement(name, impls, formula, z, y, jax, jnp)
    data = (jnp.asarray(z), jnp.asarray(y))
    samples = {label: [] for label in impls}
    for round_ in range(repeats + 1):
        for label, fn in impls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*data))
            if round_:  # round 0 compiles
                samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(times) * 1e3 for label, times in samples.items()}, z.shape


def report(results) -> str:
    lines = ["| loss | shape | peer | peer ms | losskit.jax ms | peer / losskit.jax |", "|---|---|---|---|---|---|"]
    for name, (ms, shape) in results.items():
        kind = next(k for k in ms if k != "losskit.jax")
        lines.append(f"| {name} | {' x '.join(map(str, shape))} | {kind} | {ms[kind]:.2f} | {ms['losskit.jax']:.2f}"
                     f" | {ms[kind] / ms['losskit.jax']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", nargs="*", help="loss names to run (default: all)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--rows", nargs=2, type=int, metavar=("N", "K"),
                        help=f"rows x classes of the class-axis losses (default {ROWS[0]} {ROWS[1]})")
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp
    import optax

    n, rows = (SMOKE_ELEMENTS * 10, SMOKE_ROWS) if args.smoke else (ELEMENTS, ROWS)
    rows = tuple(args.rows) if args.rows else rows
    repeats = 1 if args.smoke else args.repeats
    rng = np.random.default_rng(0)
    results = {}
    for name in args.only or peers(jax, jnp, optax):
        results[name] = time_loss(name, n, rows, repeats, rng)
        print(name, {k: round(v, 2) for k, v in results[name][0].items()}, flush=True)
    text = report(results)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)


if __name__ == "__main__":
    main()
