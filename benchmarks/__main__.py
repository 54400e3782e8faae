"""Side-by-side benchmarks: losskit against every installed peer, in one process run.

    python -m benchmarks                       # full sizes (several minutes, ~10 GB peak)
    python -m benchmarks --smoke               # tiny sizes, one repeat: checks the harness runs
    python -m benchmarks --markdown BENCHMARKS.md

Each case times loss + gradient (forward + backward) of float32 inputs. Implementations run
alternately, ``--repeats`` rounds after one warm-up (JIT compiles excluded), and the table gives
median / min / max milliseconds, the median's effective bandwidth (bytes of the input read plus
the gradient written, over time) as a fraction of a copy bandwidth measured in the same run, and
the ratio to losskit. Peak extra memory is measured for the first softmax case and the
linear + CE case, one subprocess per implementation (``ru_maxrss`` above the inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import losskit as lk
from losskit.losses import _compiled

from . import _agree

FULL = {
    "ce": [(4096, 32000), (1024, 128256), (8192, 1000), (64, 10)],
    "ce_soft": (4096, 32000),
    "bce": (50_000, 1000),
    "multilabel": (50_000, 1000),
    "mse": (50_000, 1000),
    "linear": (4096, 1024, 128256),
}
SMOKE = {"ce": [(64, 100), (16, 300), (128, 10)], "ce_soft": (64, 100), "bce": (100, 50), "multilabel": (100, 50),
         "mse": (100, 50), "linear": (32, 16, 300)}
#: calls per timed sample for a shape this small (per-call overhead is what it measures)
SMALL_CALLS = 200


# -- implementations: each returns a function of the case's arrays doing loss + gradient ---------
def _numpy_ce(z, y):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[np.arange(len(y)), y]))
    g = e / s
    g[np.arange(len(y)), y] -= 1
    g /= len(y)
    return loss, g


def _numpy_ce_soft(z, t):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(-np.sum(t * (z - m - np.log(s)), axis=1)))
    return loss, (e / s - t) / len(z)


def _numpy_bce(z, t):
    e = np.exp(-np.abs(z))
    loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(e)))
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return loss, (sig - t) / z.size


def _numpy_mse(p, t):
    d = p - t
    return float(np.mean(d * d)), d * (2.0 / d.size)


def _numpy_multilabel(z, t):
    loss, g = _numpy_bce(z, t)
    return loss * z.shape[1], g * z.shape[1]


def _torch_impls(kind):
    try:
        import torch

        import losskit.torch as lt
    except ImportError:
        return {}
    torch.set_num_threads(os.cpu_count() or 1)
    F = torch.nn.functional
    loss_fn = {"ce": F.cross_entropy, "ce_soft": F.cross_entropy, "bce": F.binary_cross_entropy_with_logits,
               "mse": F.mse_loss,
               "multilabel": lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction="sum") / z.shape[0]}[kind]
    layer = {"ce": lt.SoftmaxCrossEntropy, "ce_soft": lt.SoftmaxCrossEntropy, "bce": lt.BinaryCrossEntropyWithLogits,
             "mse": lt.MeanSquaredError,
             "multilabel": lt.MultilabelCrossEntropy}[kind]()

    def steps(fn):
        def step(z, t):
            z = z.detach().requires_grad_(True)
            loss = fn(z, t)
            loss.backward()
            return loss, z.grad
        return step

    impls = {"torch eager": (steps(loss_fn), "torch"), "losskit.torch (CPU tensors)": (steps(layer), "torch")}
    compiled = torch.compile(lambda z, t: torch.func.grad_and_value(lambda v: loss_fn(v, t))(z))
    impls["torch.compile"] = (compiled, "torch")
    return impls


def _jax_impls(kind):
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return {}
    import losskit.jax as lj

    loss_fn = {
        "ce": lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(),
        "ce_soft": lambda z, t: optax.softmax_cross_entropy(z, t).mean(),
        "bce": lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean(),
        "multilabel": lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).sum(-1).mean(),
        "mse": lambda p, t: jnp.mean((p - t) ** 2),
    }[kind]
    ours = {"ce": lj.softmax_cross_entropy, "ce_soft": lj.softmax_cross_entropy,
            "bce": lj.binary_cross_entropy_with_logits,
            "multilabel": lj.multilabel_cross_entropy, "mse": lj.mean_squared_error}[kind]
    fn = jax.jit(jax.value_and_grad(loss_fn))
    lk_fn = jax.jit(jax.value_and_grad(lambda z, t: ours(z, t)))
    return {"JAX jit (optax)": (lambda a, b: jax.block_until_ready(fn(a, b)), "jax"),
            "losskit.jax jit": (lambda a, b: jax.block_until_ready(lk_fn(a, b)), "jax")}


def _into_buffer(loss):
    """``loss.value_and_grad(x, t, out=buffer)`` with one buffer per input shape, made at the warm-up."""
    buffers = {}

    def step(x, t):
        out = buffers.get(x.shape)
        if out is None:
            out = buffers[x.shape] = np.empty_like(x)
        return loss.value_and_grad(x, t, out=out)
    return step


def implementations(kind):
    cls = {"ce": lk.SoftmaxCrossEntropy, "ce_soft": lk.SoftmaxCrossEntropy, "bce": lk.BinaryCrossEntropyWithLogits,
           "multilabel": lk.MultilabelCrossEntropy, "mse": lk.MeanSquaredError}[kind]
    impls = {"losskit": (cls().value_and_grad, "numpy"), "losskit out=": (_into_buffer(cls()), "numpy"),
             "plain NumPy": ({"ce": _numpy_ce, "ce_soft": _numpy_ce_soft, "bce": _numpy_bce, "mse": _numpy_mse,
                              "multilabel": _numpy_multilabel}[kind], "numpy")}
    impls.update(_torch_impls(kind))
    impls.update(_jax_impls(kind))
    return impls


def _convert(array, library):
    if library == "torch":
        import torch

        return torch.from_numpy(array)
    if library == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    return array


def _normal(rng, shape, scale):
    """Filled in place: no temporary raises the peak-memory baseline of the memory runs."""
    out = np.empty(shape, dtype=np.float32)
    rng.standard_normal(dtype=np.float32, out=out)
    out *= scale
    return out


def _inputs(kind, shape, rng):
    if kind == "ce":
        return _normal(rng, shape, 3.0), rng.integers(0, shape[1], size=shape[0])
    if kind == "ce_soft":  # a teacher's probabilities: rows of a softmax, made in place
        target = _normal(rng, shape, 2.0)
        np.exp(target, out=target)
        target /= target.sum(axis=1, keepdims=True)
        return _normal(rng, shape, 3.0), target
    return (rng.standard_normal(shape, dtype=np.float32) * 3,
            (rng.random(shape, dtype=np.float32) > 0.5).astype(np.float32))


def _blas() -> str:
    """NumPy's BLAS and the kernel it runs (OPENBLAS_CORETYPE can force an older one)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{info.get('internal_api')} {info.get('architecture') or ''} x{info.get('num_threads')}".strip()
    return "unknown"


def copy_bandwidth(n_bytes=1 << 29):
    """GB/s of ``np.copyto`` (read + write), the ceiling a fwd+grad sweep is compared with."""
    a = np.ones(n_bytes // 4, dtype=np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - start)
    return 2 * a.nbytes / min(times) / 1e9


def time_case(kind, shape, repeats, rng):
    arrays = _inputs(kind, shape, rng)
    impls = implementations(kind)
    prepared = {name: (fn, [_convert(a, lib) for a in arrays]) for name, (fn, lib) in impls.items()}
    calls = SMALL_CALLS if arrays[0].size <= 4096 else 1
    # warm-up (JIT compilation, first-touch allocation), whose results must agree before any timing
    _agree.check(kind, arrays, {name: fn(*args) for name, (fn, args) in prepared.items()})
    times = {name: [] for name in prepared}
    for _ in range(repeats):
        for name, (fn, args) in prepared.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn(*args)
            times[name].append((time.perf_counter() - start) / calls)
    # bytes moved: the input read and the gradient written, plus a dense target read
    return times, (2 if kind == "ce" else 3) * arrays[0].nbytes


# -- peak memory, one subprocess per implementation ----------------------------------------------
def _memory_child(kind, name, shape):
    rng = np.random.default_rng(0)
    if kind == "linear":
        n, d, v = shape
        hidden = _normal(rng, (n, d), 1.0)
        weight = _normal(rng, (v, d), 0.02)
        labels = rng.integers(0, v, size=n)
        fn = _linear_impls()[name]
        fn[0](*fn[1](hidden[:4], weight[:64].copy(), labels[:4] % 64))  # imports and JIT loads, not measured
        args = fn[1](hidden, weight, labels)
        _reset_peak()
        base = _rss()
        start = time.perf_counter()
        fn[0](*args)
        elapsed = time.perf_counter() - start
        return {"extra": _rss() - base, "seconds": elapsed}
    arrays = _inputs(kind, shape, rng)
    fn, lib = implementations(kind)[name]
    # the warm-up loads the kernel the measured call runs: a call of fewer than SERIAL_BELOW elements
    # would run (and load) only the serial twin, and the measured call would then count numba's
    # loading of the parallel kernel (about 145 MiB) as its own
    rows = -(-_compiled.SERIAL_BELOW // arrays[0].shape[-1]) + 1 if arrays[0].ndim > 1 else _compiled.SERIAL_BELOW + 1
    small = [_convert(a[:rows], lib) for a in arrays]
    if kind == "ce":
        small[1] = _convert(np.zeros(rows, dtype=np.int64), lib)
    fn(*small)
    args = [_convert(a, lib) for a in arrays]
    _reset_peak()
    base = _rss()
    fn(*args)
    return {"extra": _rss() - base}


def _rss():
    """Peak resident set size (bytes) since the last :func:`_reset_peak`.

    Not ``ru_maxrss``: Linux keeps a forked child's high-water mark from its parent across exec,
    so a child started by a large parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_memory(kind, names, shape):
    out = {}
    for name in names:
        command = [sys.executable, "-m", "benchmarks", "--memory-child", json.dumps([kind, name, shape])]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode == 0:
            out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- fused linear + cross-entropy -------------------------------------------------------------------
def _linear_impls():
    from losskit.losses.linear import linear_cross_entropy_value_and_grad

    def numpy_floor(h, w, y):  # the three gemms alone, with NumPy's BLAS (what losskit's sweep calls)
        z = h @ w.T
        return z @ w, z.T @ h

    impls = {"losskit linear_cross_entropy": (linear_cross_entropy_value_and_grad, lambda h, w, y: (h, w, y)),
             "matmul floor (NumPy, 3 gemms)": (numpy_floor, lambda h, w, y: (h, w, y))}
    try:
        import torch
    except ImportError:
        return impls

    def naive(h, w, y):
        h, w = h.requires_grad_(True), w.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(h @ w.T, y)
        loss.backward()
        return loss

    def floor(h, w, y):  # the three gemms alone: logits, d/dh, d/dW
        z = h @ w.T
        return z @ w, z.T @ h

    def to_torch(h, w, y):
        return torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(y)

    impls["torch naive"] = (naive, to_torch)
    impls["matmul floor (torch, 3 gemms)"] = (floor, to_torch)
    return impls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, no memory subprocesses")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", help="also write the report to this file")
    parser.add_argument("--no-linear", action="store_true", help="skip the linear + CE case")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        kind, name, shape = json.loads(args.memory_child)
        print(json.dumps(_memory_child(kind, name, tuple(shape))))
        return
    sizes = SMOKE if args.smoke else FULL
    repeats = 1 if args.smoke else args.repeats
    rng = np.random.default_rng(0)
    bandwidth = copy_bandwidth(1 << 22 if args.smoke else 1 << 29)
    lines = ["# Benchmarks\n", f"Command: `python -m benchmarks{' --smoke' if args.smoke else ''}`; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, BLAS {_blas()}, float32, "
             f"median of {repeats} alternating rounds after a warm-up; load average at start "
             f"{os.getloadavg()[0]:.2f}. Copy bandwidth measured in this run: {bandwidth:.1f} GB/s.\n",
             "| case | implementation | median ms | min | max | GB/s (x copy bw) | time / losskit |",
             "|---|---|---|---|---|---|---|"]
    cases = [("ce", s) for s in sizes["ce"]] + [(k, sizes[k]) for k in ("ce_soft", "bce", "multilabel", "mse")]
    for kind, shape in cases:
        times, n_bytes = time_case(kind, shape, repeats, rng)
        ref = statistics.median(times["losskit"])
        for name, ts in times.items():
            med = statistics.median(ts)
            gbs = n_bytes / med / 1e9
            digits = 1 if med > 1e-3 else 4
            lines.append(f"| {kind} fwd+grad {' x '.join(map(str, shape))} | {name} | {1e3 * med:.{digits}f} | "
                         f"{1e3 * min(ts):.{digits}f} | {1e3 * max(ts):.{digits}f} | {gbs:.1f} "
                         f"({gbs / bandwidth:.2f}) | {med / ref:.2f} |")
        print(lines[-len(times):] and "\n".join(lines[-len(times):]), flush=True)
    if not args.smoke:
        memory = peak_memory("ce", list(implementations("ce")), sizes["ce"][0])
        rows, classes = sizes["ce"][0]
        lines += ["", f"Peak extra memory, softmax CE fwd+grad {rows} x {classes} "
                  f"(logits {rows * classes * 4 / 2**20:.0f} MiB), one process each:", "",
                  "| implementation | extra MiB | x logits |", "|---|---|---|"]
        logits_bytes = sizes["ce"][0][0] * sizes["ce"][0][1] * 4
        for name, r in memory.items():
            lines.append(f"| {name} | {r['extra'] / 2**20:.0f} | {r['extra'] / logits_bytes:.2f} |")
    if not args.no_linear:
        n, d, v = sizes["linear"]
        lines += ["", f"Linear + CE fwd+bwd, hidden {n} x {d}, V = {v}, one process each:", "",
                  "| implementation | seconds | extra peak MiB |", "|---|---|---|"]
        _agree.check_linear(_linear_impls(), sizes["linear"])  # before any linear timing
        if args.smoke:
            rng_l = np.random.default_rng(0)
            h = rng_l.standard_normal((n, d), dtype=np.float32)
            w = rng_l.standard_normal((v, d), dtype=np.float32)
            y = rng_l.integers(0, v, size=n)
            for name, (fn, conv) in _linear_impls().items():
                start = time.perf_counter()
                fn(*conv(h, w, y))
                lines.append(f"| {name} | {time.perf_counter() - start:.3f} | n/a (smoke) |")
        else:
            for name, r in peak_memory("linear", list(_linear_impls()), sizes["linear"]).items():
                lines.append(f"| {name} | {r['seconds']:.2f} | {r['extra'] / 2**20:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.markdown:
        with open(args.markdown + ".tmp", "w") as handle:
            handle.write(report)
        os.replace(args.markdown + ".tmp", args.markdown)


if __name__ == "__main__":
    main()
