"""The catalogue's losses against the peers, forward + gradient, float32, in one process run.

    python -m benchmarks.catalogue                   # full sizes (50M elements; class axis 4096 x 32000)
    python -m benchmarks.catalogue --only kl_divergence poly_cross_entropy   # some losses only
    python -m benchmarks.catalogue --smoke           # tiny sizes, one repeat: checks the harness
    python -m benchmarks.catalogue --only distillation_loss --near-teachers  # teachers near the student
    python -m benchmarks.catalogue --markdown FILE   # also write the table (replaces FILE's section)

For each loss: losskit on NumPy (the default path), torch eager (``torch.nn.functional`` where torch
has the loss, else the formula in torch ops, as a user would write it), JAX ``jit(value_and_grad)``
(optax where it has the loss, else the formula in ``jnp``), ``losskit.torch`` on CPU tensors and
``losskit.jax`` under ``jit``. Before any timing, each implementation's value and gradient are
checked against losskit's float64 reference on the same inputs (a row fails loudly when they
disagree); for the class-axis losses on their first :data:`AGREE_ROWS` rows (the float64 reference
of 4096 x 32000 would hold gigabytes of temporaries on a shared machine). Implementations run
alternately, ``--repeats`` rounds after a warm-up; the table gives the median milliseconds and the
ratio of the faster peer (torch eager or JAX jit) to losskit.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

import losskit as lk

from ._report import write_markdown

ELEMENTS = 50_000_000
ROWS = (4096, 32000)  # the class-axis losses: rows of a 32000-class softmax (issue 15's size)
AGREE_ROWS = 256
SMOKE_ELEMENTS, SMOKE_ROWS = 4096, (16, 300)
LABELS = 1000  # the label axis of the multi-label losses: rows of 1000 labels
PAUSE = 0.2  # seconds before each timed call (see time_loss)


def _torch_formulas(torch):
    F = torch.nn.functional

    def sign(y):
        return 2 * y - 1

    return {
        "huber_loss": lambda z, y: F.huber_loss(z, y),
        "smooth_l1_loss": lambda z, y: F.smooth_l1_loss(z, y),
        "absolute_error": lambda z, y: F.l1_loss(z, y),
        "pseudo_huber_loss": lambda z, y: ((1 + (z - y) ** 2).sqrt() - 1).mean(),
        "log_cosh_loss": lambda z, y: ((z - y) + F.softplus(-2 * (z - y)) - math.log(2)).mean(),
        "poisson_deviance": lambda z, y: (2 * (torch.xlogy(y, y) - y * z - y + z.exp())).mean(),
        "gamma_deviance": lambda z, y: (2 * (z - y.log() + y * (-z).exp() - 1)).mean(),
        # p = 1.5: 2 (y^b / (a b) - y mu^a / a + mu^b / b) with a = -1/2, b = 1/2
        "tweedie_deviance": lambda z, y: (2 * (-4 * y.sqrt() + 2 * y * (-0.5 * z).exp() + 2 * (0.5 * z).exp())).mean(),
        "hinge_loss": lambda z, y: (1 - sign(y) * z).clamp(min=0).mean(),
        "squared_hinge_loss": lambda z, y: (1 - sign(y) * z).clamp(min=0).square().mean(),
        "exponential_loss": lambda z, y: (y * (-z).exp() + (1 - y) * z.exp()).mean(),
        "sigmoid_focal_loss": _torch_focal(torch),
        "multilabel_sigmoid_focal_loss": lambda z, y: _torch_focal(torch)(z, y) * z.shape[-1],
        "multilabel_hinge_loss": lambda z, y: (1 - sign(y) * z).clamp(min=0).sum(-1).mean(),
        "multilabel_squared_hinge_loss": lambda z, y: (1 - sign(y) * z).clamp(min=0).square().sum(-1).mean(),
        "asymmetric_loss": _torch_asl(torch),
    }


#: the class-axis losses, with the options the peers' formulas below compute; their target kind
CLASS_CASES = {
    "kl_divergence": ({}, "probs"),
    "distillation_loss": ({"temperature": 2.0}, "teacher"),
    "softmax_focal_loss": ({"gamma": 2.0}, "labels"),
    "poly_cross_entropy": ({"epsilon": 1.0}, "labels"),
    "multiclass_hinge_loss": ({}, "labels"),
    "js_divergence": ({"beta": 0.5}, "teacher"),
}
QUANTILES = (0.1, 0.5, 0.9)
#: the losses whose example is a few units on the last axis, one target each: their options and units
#: (50M elements in all: 25M (mean, log-variance) pairs, 16.7M examples of 3 quantiles)
UNIT_CASES = {
    "gaussian_nll_loss": ({}, 2),
    "quantile_loss": ({"quantiles": QUANTILES}, len(QUANTILES)),
}


def _torch_class_formulas(torch):
    F = torch.nn.functional

    def focal(z, y):  # as users write it (e.g. on top of cross_entropy): p_y = exp(-ce)
        ce = F.cross_entropy(z, y, reduction="none")
        return ((1 - torch.exp(-ce)) ** 2 * ce).mean()

    def poly(z, y):  # the Poly-1 paper's code: ce + epsilon (1 - p_y)
        ce = F.cross_entropy(z, y, reduction="none")
        p_y = F.softmax(z, dim=-1).gather(-1, y[:, None]).squeeze(-1)
        return (ce + (1 - p_y)).mean()

    def crammer_singer(z, y):
        shifted = z + 1 - F.one_hot(y, z.shape[-1]).to(z.dtype)
        return (shifted.amax(-1) - z.gather(-1, y[:, None]).squeeze(-1)).mean()

    def jsd(z, t):  # TRL's GKDTrainer.generalized_jsd_loss (beta 0.5, T 1), "batchmean" over the rows
        student, teacher = F.log_softmax(z, dim=-1), F.log_softmax(t, dim=-1)
        beta = torch.tensor(0.5, dtype=student.dtype)
        mixture = torch.logsumexp(torch.stack([student + torch.log(1 - beta), teacher + torch.log(beta)]), dim=0)
        kl_teacher = F.kl_div(mixture, teacher, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture, student, reduction="none", log_target=True)
        return (beta * kl_teacher + (1 - beta) * kl_student).sum() / z.shape[0]

    return {
        "kl_divergence": lambda z, t: F.kl_div(F.log_softmax(z, dim=-1), t, reduction="batchmean"),
        "distillation_loss": lambda z, t: 4.0 * F.kl_div(F.log_softmax(z / 2.0, dim=-1), F.log_softmax(t / 2.0, dim=-1),
                                                          reduction="batchmean", log_target=True),
        "softmax_focal_loss": focal,
        "poly_cross_entropy": poly,
        "multiclass_hinge_loss": crammer_singer,
        "js_divergence": jsd,
    }


def _torch_unit_formulas(torch):
    F = torch.nn.functional

    def pinball(z, y):
        q = torch.tensor(QUANTILES, dtype=z.dtype)
        e = y[:, None] - z
        return torch.maximum(q * e, (q - 1) * e).sum(-1).mean()

    return {
        "gaussian_nll_loss": lambda z, y: F.gaussian_nll_loss(z[:, 0], y, z[:, 1].exp(), full=True),
        "quantile_loss": pinball,
    }


def _jax_unit_formulas(jnp):
    def pinball(z, y):
        q = jnp.asarray(QUANTILES, z.dtype)
        e = y[:, None] - z
        return jnp.maximum(q * e, (q - 1) * e).sum(-1).mean()

    def gaussian_nll(z, y):
        mean, log_var = z[:, 0], z[:, 1]
        return (0.5 * (log_var + (y - mean) ** 2 * jnp.exp(-log_var) + math.log(2 * math.pi))).mean()

    return {"gaussian_nll_loss": gaussian_nll, "quantile_loss": pinball}


def _jax_class_formulas(jax, jnp, optax):
    def focal(z, y):
        log_p = jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=-1)[:, 0]
        return (-((1 - jnp.exp(log_p)) ** 2) * log_p).mean()

    def jsd(z, t):  # TRL's formula in jnp: F.kl_div(a, b, log_target=True) is exp(b) (b - a)
        student, teacher = jax.nn.log_softmax(z), jax.nn.log_softmax(t)
        mixture = jax.nn.logsumexp(jnp.stack([student + math.log(0.5), teacher + math.log(0.5)]), axis=0)
        per_row = 0.5 * (jnp.exp(teacher) * (teacher - mixture)).sum(-1) + \
            0.5 * (jnp.exp(student) * (student - mixture)).sum(-1)
        return per_row.mean()

    return {
        "kl_divergence": lambda z, t: optax.losses.kl_divergence(jax.nn.log_softmax(z), t).mean(),
        "distillation_loss": lambda z, t: 4.0 * optax.losses.kl_divergence(jax.nn.log_softmax(z / 2.0),
                                                                           jax.nn.softmax(t / 2.0)).mean(),
        "softmax_focal_loss": focal,
        "poly_cross_entropy": lambda z, y: optax.losses.poly_loss_cross_entropy(
            z, jax.nn.one_hot(y, z.shape[-1]), epsilon=1.0).mean(),
        "multiclass_hinge_loss": lambda z, y: optax.losses.multiclass_hinge_loss(z, y).mean(),
        "js_divergence": jsd,
    }


def _torch_focal(torch):
    F = torch.nn.functional

    def focal(z, y):  # torchvision.ops.sigmoid_focal_loss with alpha=-1 (none), gamma=2, mean
        p = torch.sigmoid(z)
        ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return (ce * (1 - p_t) ** 2).mean()
    return focal


def _torch_asl(torch):
    def asl(z, y):  # the reference implementation's arithmetic, with the focusing weight differentiated
        p = torch.sigmoid(z)
        xs_neg = (1 - p + 0.05).clamp(max=1)
        loss = y * torch.log(p.clamp(min=1e-8)) + (1 - y) * torch.log(xs_neg.clamp(min=1e-8))
        pt = p * y + xs_neg * (1 - y)
        gamma = 1.0 * y + 4.0 * (1 - y)
        return -(loss * (1 - pt) ** gamma).sum(-1).mean()
    return asl


def _jax_formulas(jnp, optax):
    def sign(y):
        return 2 * y - 1

    def asl(z, y):
        p = 1 / (1 + jnp.exp(-z))
        xs_neg = jnp.minimum(1 - p + 0.05, 1.0)
        loss = y * jnp.log(jnp.maximum(p, 1e-8)) + (1 - y) * jnp.log(jnp.maximum(xs_neg, 1e-8))
        pt = p * y + xs_neg * (1 - y)
        return -(loss * (1 - pt) ** (1.0 * y + 4.0 * (1 - y))).sum(-1).mean()

    return {
        "huber_loss": lambda z, y: optax.huber_loss(z, y).mean(),
        "smooth_l1_loss": lambda z, y: optax.huber_loss(z, y).mean(),
        "absolute_error": lambda z, y: jnp.abs(z - y).mean(),
        "pseudo_huber_loss": lambda z, y: (jnp.sqrt(1 + (z - y) ** 2) - 1).mean(),
        "log_cosh_loss": lambda z, y: optax.log_cosh(z, y).mean(),
        "poisson_deviance": lambda z, y: (2 * (jax_xlogy(y, y) - y * z - y + jnp.exp(z))).mean(),
        "gamma_deviance": lambda z, y: (2 * (z - jnp.log(y) + y * jnp.exp(-z) - 1)).mean(),
        "tweedie_deviance": lambda z, y: (2 * (-4 * jnp.sqrt(y) + 2 * y * jnp.exp(-0.5 * z)
                                               + 2 * jnp.exp(0.5 * z))).mean(),
        "hinge_loss": lambda z, y: optax.hinge_loss(z, sign(y)).mean(),
        "squared_hinge_loss": lambda z, y: (jnp.maximum(1 - sign(y) * z, 0) ** 2).mean(),
        "exponential_loss": lambda z, y: (y * jnp.exp(-z) + (1 - y) * jnp.exp(z)).mean(),
        "sigmoid_focal_loss": lambda z, y: optax.sigmoid_focal_loss(z, y, alpha=None, gamma=2.0).mean(),
        "multilabel_sigmoid_focal_loss": lambda z, y: optax.sigmoid_focal_loss(z, y, alpha=None).sum(-1).mean(),
        "multilabel_hinge_loss": lambda z, y: jnp.maximum(1 - sign(y) * z, 0).sum(-1).mean(),
        "multilabel_squared_hinge_loss": lambda z, y: (jnp.maximum(1 - sign(y) * z, 0) ** 2).sum(-1).mean(),
        "asymmetric_loss": asl,
    }


def jax_xlogy(x, y):
    import jax.scipy.special

    return jax.scipy.special.xlogy(x, y)


#: the catalogue's elementwise losses, with the options the peers' formulas above compute
CASES = {
    "huber_loss": {}, "smooth_l1_loss": {}, "absolute_error": {}, "pseudo_huber_loss": {}, "log_cosh_loss": {},
    "poisson_deviance": {}, "gamma_deviance": {}, "tweedie_deviance": {"power": 1.5}, "hinge_loss": {},
    "squared_hinge_loss": {}, "exponential_loss": {}, "sigmoid_focal_loss": {},
    "multilabel_sigmoid_focal_loss": {}, "multilabel_hinge_loss": {}, "multilabel_squared_hinge_loss": {},
    "asymmetric_loss": {},
}


def _options(name):
    for cases in (CLASS_CASES, UNIT_CASES):
        if name in cases:
            return cases[name][0]
    return CASES[name]


def _unit_inputs(name, n, rng):
    """``n`` elements as examples of the loss's units (normal predictions, means and log-variances)
    and one normal target per example."""
    units = UNIT_CASES[name][1]
    z = rng.standard_normal(size=(n // units, units), dtype=np.float32)
    y = rng.standard_normal(size=n // units, dtype=np.float32)
    # off the pinball loss's kink (a prediction equal to its target: a few of 50M float32 draws), where
    # torch's and JAX's maximum split the subgradient and losskit takes 1 - q
    z = np.where(z == y[:, None], z + np.float32(0.01), z)
    return z, y


#: the noise of a near teacher's logits about the student's (``--near-teachers``)
NEAR_TEACHER_NOISE = 0.1


def _class_inputs(name, rows, rng, near_teachers=False):
    """The logits and target of a class-axis loss: N(0, 4) logits; labels, a softmax of N(0, 4) logits, or
    a teacher's N(0, 4) logits (independent of the student's: a distillation value near T^2; with
    ``near_teachers`` the student's plus N(0, NEAR_TEACHER_NOISE^2), a value near 1e-3 T^2, as late in
    training, where the centred value sum runs)."""
    n, k = rows
    z = (rng.standard_normal(size=(n, k), dtype=np.float32) * 2).astype(np.float32)
    kind = CLASS_CASES[name][1]
    if kind == "labels":
        y = rng.integers(0, k, size=n)
        if name == "multiclass_hinge_loss":  # off the ties of the shifted maximum, where subgradients differ
            z[np.arange(n), y] += np.float32(0.5)
        return z, y
    other = (rng.standard_normal(size=(n, k), dtype=np.float32) * 2).astype(np.float32)
    if kind == "teacher":
        return z, (z + np.float32(NEAR_TEACHER_NOISE) * other / 2 if near_teachers else other).astype(np.float32)
    other -= other.max(axis=-1, keepdims=True)
    np.exp(other, out=other)
    other /= other.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    return z, other


def _inputs(name, n, rng):
    cls = lk.REGISTRY[name][0]
    shape = (n // LABELS, LABELS) if cls.over_last_axis == "sum" else (n,)
    z = rng.normal(size=shape).astype(np.float32)
    # off the margin losses' kinks (|z| = 1), where the peers take the other subgradient
    z = np.where(np.abs(np.abs(z) - 1) < 1e-3, z + np.float32(0.01), z).astype(np.float32)
    if cls.target in ("binary", "sign"):
        y = (rng.uniform(size=shape) > 0.5).astype(np.float32)
    elif cls.target == "value" and cls.link is not lk.LOG:
        y = rng.normal(size=shape).astype(np.float32)
    else:
        y = rng.gamma(2.0, size=shape).astype(np.float32) + (cls.target == "positive") * np.float32(0.1)
    return z, y


def implementations(name):
    """name -> (callable(z, y) -> (value, grad), library of its arrays)."""
    loss = lk.REGISTRY[name][0](**_options(name))
    impls = {"losskit": (loss.value_and_grad, "numpy")}
    try:
        import torch

        import losskit.torch as lt

        torch.set_num_threads(os.cpu_count() or 1)
        formula = {**_torch_formulas(torch), **_torch_class_formulas(torch), **_torch_unit_formulas(torch)}[name]
        layer = lt.module(loss)

        def step(fn):
            def run(z, y):
                z = z.detach().requires_grad_(True)
                value = fn(z, y)
                value.backward()
                return value, z.grad
            return run

        impls["torch eager"] = (step(formula), "torch")
        impls["losskit.torch"] = (step(layer), "torch")
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        import optax

        import losskit.jax as lj

        formulas = {**_jax_formulas(jnp, optax), **_jax_class_formulas(jax, jnp, optax), **_jax_unit_formulas(jnp)}
        peer = jax.jit(jax.value_and_grad(formulas[name]))
        ours_fn = lj.loss_fn(loss)
        ours = jax.jit(jax.value_and_grad(lambda z, y: ours_fn(z, y)))
        impls["JAX jit"] = (lambda z, y: jax.block_until_ready(peer(z, y)), "jax")
        impls["losskit.jax jit"] = (lambda z, y: jax.block_until_ready(ours(z, y)), "jax")
    except ImportError:
        pass
    return impls


def _convert(array, library):
    if library == "torch":
        import torch

        return torch.from_numpy(array)
    if library == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    return array


def _host(value):
    if hasattr(value, "detach"):
        value = value.detach()
    return np.asarray(value, dtype=np.float64)


def check_agreement(name, impls, z, y):
    """Every implementation's value and gradient against losskit's float64 reference, before timing."""
    reference = lk.REGISTRY[name][0](impl="xp", **_options(name))
    if name in CLASS_CASES:  # a float32 row sum of probabilities is 1 to float32's rounding: float64's check
        z, y = z[:AGREE_ROWS], y[:AGREE_ROWS]
        target = y.astype(np.float64) if y.dtype.kind == "f" else y
        if CLASS_CASES[name][1] == "probs":
            target = target / target.sum(axis=-1, keepdims=True)
    else:
        target = y.astype(np.float64)
    value, grad = reference.value_and_grad(z.astype(np.float64), target)
    for impl, (fn, library) in impls.items():
        got_value, got_grad = fn(_convert(z, library), _convert(y, library))
        scale = np.max(np.abs(grad)) or 1.0
        value_error = abs(float(_host(got_value)) - float(value)) / max(abs(float(value)), 1e-30)
        grad_error = float(np.max(np.abs(_host(got_grad) - grad))) / scale
        # the ASL peer clamps its logs at 1e-8, as the reference code does: its values differ there
        tol = 1e-3 if name == "asymmetric_loss" and impl in ("torch eager", "JAX jit") else 1e-4
        if not (value_error < tol and grad_error < tol):
            raise AssertionError(f"{name}: {impl} disagrees with the reference (value {value_error:.2e}, "
                                 f"gradient {grad_error:.2e} relative)")


def time_loss(name, n, rows, repeats, rng, near_teachers=False):
    z, y = _class_inputs(name, rows, rng, near_teachers) if name in CLASS_CASES else \
        _unit_inputs(name, n, rng) if name in UNIT_CASES else _inputs(name, n, rng)
    impls = implementations(name)
    check_agreement(name, impls, z, y)
    data = {library: (_convert(z, library), _convert(y, library)) for library in ("numpy", "torch", "jax")}
    samples = {impl: [] for impl in impls}
    for round_ in range(repeats + 1):
        for impl, (fn, library) in impls.items():
            # a pause first, the same for every implementation: the thread pools of the one before
            # (XLA's, OpenMP's) spin-wait for a while after their work, and on 2 cores that would be
            # charged to whoever runs next
            time.sleep(PAUSE)
            start = time.perf_counter()
            fn(*data[library])
            if round_:  # round 0 warms up (JIT compiles)
                samples[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(times) * 1e3 for impl, times in samples.items()}


def report(results, n, rows) -> str:
    lines = [f"Forward + gradient, float32, {n:,} elements (multi-label: rows of {LABELS} labels; Gaussian NLL: "
             f"(mean, log-variance) pairs; quantile: {len(QUANTILES)} quantiles per target; class axis: "
             f"{rows[0]} x {rows[1]}); median ms; "
             "ratio = the faster of torch eager and JAX jit over losskit (> 1: losskit is faster).", "",
             "| loss | losskit | torch eager | JAX jit | ratio | losskit.torch | vs torch | losskit.jax | vs JAX |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, ms in results.items():
        ours = ms["losskit"]
        peer = min(ms.get("torch eager", math.inf), ms.get("JAX jit", math.inf))
        torch_ms, jax_ms = ms.get("torch eager", math.nan), ms.get("JAX jit", math.nan)
        lines.append(f"| {name} | {ours:.1f} | {torch_ms:.1f} | {jax_ms:.1f}"
                     f" | {peer / ours:.2f}x | {ms.get('losskit.torch', math.nan):.1f}"
                     f" | {ms.get('torch eager', math.nan) / ms.get('losskit.torch', math.nan):.2f}x"
                     f" | {ms.get('losskit.jax jit', math.nan):.1f}"
                     f" | {ms.get('JAX jit', math.nan) / ms.get('losskit.jax jit', math.nan):.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=[*CASES, *UNIT_CASES, *CLASS_CASES], metavar="LOSS",
                        help="catalogue loss names to run (default: all)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--near-teachers", action="store_true",
                        help="teacher logits: the student's plus N(0, 0.01) noise (default: independent of them)")
    args = parser.parse_args()
    n = SMOKE_ELEMENTS * 10 if args.smoke else ELEMENTS
    repeats = 1 if args.smoke else args.repeats
    rng = np.random.default_rng(0)
    results = {}
    rows = SMOKE_ROWS if args.smoke else ROWS
    for name in args.only or [*CASES, *UNIT_CASES, *CLASS_CASES]:
        results[name] = time_loss(name, n, rows, repeats, rng, args.near_teachers)
        print(name, {k: round(v, 1) for k, v in results[name].items()}, flush=True)
    text = report(results, n, rows)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)


if __name__ == "__main__":
    main()
