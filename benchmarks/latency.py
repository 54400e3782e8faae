"""Small calls: inside a NumPy training loop, and the very first call of a fresh process.

    python -m benchmarks.latency [--steps 300] [--markdown FILE]
    python -m benchmarks.latency --step-processes 5     # part 1 alone, once per new process
    python -m benchmarks.latency --demo                 # part 4 alone
    python -m benchmarks.latency --torch-small          # part 5 alone
    python -m benchmarks.latency --blas-step            # part 6 alone
    python -m benchmarks.latency --blas-step --all-shapes --kernels default|serial|parallel|chunks
    python -m benchmarks.latency --loop-start 5         # part 7 alone, in 5 new processes each way

0. Small call: softmax CE ``value_and_grad`` on 32 x 10 float64 (the demo's mini-batch), per call,
   against torch eager (``F.cross_entropy`` and ``torch.autograd.grad`` of the logits) and JAX
   (``jit(value_and_grad)`` of optax's softmax CE), each timed over 1000 calls, alternating, median
   of 7 rounds: what a loss library adds to every step of a small network.
1. Training step (issue "one declaration", item 5): a NumPy MLP on digits-sized data (1348 x 64,
   hidden 64, 10 classes, float64), one SGD step = two gemms forward, softmax CE
   ``value_and_grad``, three gemms backward. Reported: the median step, the median
   ``value_and_grad`` inside the loop and the same call alone (after the loop), and torch eager's
   step on the same network (``F.cross_entropy`` + autograd), medians of ``--steps`` steps.
2. First call: a new interpreter (``python -c``) imports losskit and times its first
   ``SoftmaxCrossEntropy().value_and_grad`` on 256 x 10 and first
   ``BinaryCrossEntropyWithLogits().value_and_grad`` on 1000 elements, and the second call. Run it
   in a fresh venv (``pip install .``, no extras) right after installing: that is a user's first
   try (no numba cache on disk yet); a later process reuses numba's cache.
3. First ``losskit eval --json`` (and ``--html``) of a 449-row, 10-class Parquet file, the whole
   command's wall time, with an empty numba cache (``NUMBA_CACHE_DIR`` a new directory: what a fresh
   install sees) and again with that cache written. Needs the ``[eval]`` extra; skipped without it.
4. ``--demo``: the demo's four tasks (``losskit.demo.train.run``, the defaults) trained twice in one
   process, the second run's seconds per task: the training itself, without the first calls'
   one-off costs (numba loading its kernels, array-api-compat's namespace). Needs ``[cli]``.
5. ``--torch-small``: ``losskit.torch``'s module forward + ``backward()`` on small CPU tensors
   (softmax CE and BCE-with-logits, float32 and float64) against ``F.cross_entropy`` /
   ``F.binary_cross_entropy_with_logits`` forward + ``backward()``, alternating, 1000 calls per
   round, median of 9 rounds: what a small CPU step pays for the torch layer.
6. ``--blas-step``: a NumPy softmax layer's training step on calls large enough for the parallel
   kernels, ``z = h @ W``, softmax CE ``value_and_grad``, ``h.T @ g`` (hidden 512, float32; 1024 x 1000
   and 4096 x 1000 logits): the step, the loss call inside the loop, the same call alone and the two
   products alone, each after a pause, medians of 7 rounds of 50 steps. Shows numba's and OpenBLAS's
   threads sharing the cores. ``--all-shapes`` adds logits under and over ``SERIAL_BELOW``;
   ``--kernels`` makes every call run the serial twin or the parallel kernel (statically divided, or
   handed out a block at a time), whatever its size. No torch in the process: imported first,
   torch's libgomp would run numba's threads too.
7. ``--loop-start N``: a loop of small calls right after ``import losskit`` (softmax CE
   ``value_and_grad`` on 32 x 10 float64, as a small network's training loop makes them), in N new
   processes with numba's cache written and N with an empty one (``NUMBA_CACHE_DIR`` a new directory):
   the seconds and calls until the kernel answers (the reference answers while it compiles in the
   background), and the seconds the first 5000 calls take. The loop holds the GIL; the compiling
   thread needs it back after each of its thousand and more short releases (file reads, llvmlite's
   calls).

The training step varies by 1.5x from one process to the next on this 2-core machine (where
OpenBLAS's threads land), so ``--step-processes N`` measures part 1 in N new processes, torch's
step before and after NumPy's in each (the faster counts), and prints each process's ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import losskit as lk

from ._report import write_markdown
from .catalogue import PAUSE


def numpy_step_times(steps: int, with_loss: bool = True):
    """Median step, median ``value_and_grad`` inside the loop, and median of the same call alone.
    ``with_loss=False`` runs the same step with a gradient computed once before the loop (the NumPy
    work of the step without losskit's call: what no loss library can make faster)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1348, 64)), rng.integers(0, 10, 1348)
    w1, w2 = rng.normal(size=(64, 64)) * 0.1, rng.normal(size=(64, 10)) * 0.1
    loss = lk.SoftmaxCrossEntropy()
    step_times, loss_times = [], []
    for i in range(steps + 20):
        start = time.perf_counter()
        h = np.maximum(x @ w1, 0)
        z = h @ w2
        t = time.perf_counter()
        if with_loss or i == 0:
            _, g = loss.value_and_grad(z, y)
        t_loss = time.perf_counter() - t
        gh = g @ w2.T
        gh[h <= 0] = 0
        w2 -= 0.01 * (h.T @ g)
        w1 -= 0.01 * (x.T @ gh)
        if i >= 20:  # warm-up: the kernel compiles (in the background) meanwhile
            step_times.append(time.perf_counter() - start)
            loss_times.append(t_loss)
    z = np.maximum(x @ w1, 0) @ w2
    alone = []
    for _ in range(steps):
        t = time.perf_counter()
        loss.value_and_grad(z, y)
        alone.append(time.perf_counter() - t)
    return statistics.median(step_times), statistics.median(loss_times), statistics.median(alone)


def torch_step_time(steps: int):
    import torch

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(1348, 64)))
    y = torch.tensor(rng.integers(0, 10, 1348))
    w1 = torch.tensor(rng.normal(size=(64, 64)) * 0.1, requires_grad=True)
    w2 = torch.tensor(rng.normal(size=(64, 10)) * 0.1, requires_grad=True)
    times = []
    for i in range(steps + 20):
        start = time.perf_counter()
        value = torch.nn.functional.cross_entropy(torch.relu(x @ w1) @ w2, y)
        value.backward()
        with torch.no_grad():
            w1 -= 0.01 * w1.grad
            w2 -= 0.01 * w2.grad
            w1.grad = None
            w2.grad = None
        if i >= 20:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def small_call_times(rounds: int = 7, calls: int = 1000) -> dict[str, float]:
    """Median seconds per call of each implementation on a 32 x 10 float64 softmax CE value and gradient."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(32, 10)), rng.integers(0, 10, 32)
    loss = lk.SoftmaxCrossEntropy()
    impls = {"losskit": lambda: loss.value_and_grad(z, y)}
    try:
        import torch
    except ImportError:
        pass
    else:
        zt, yt = torch.tensor(z), torch.tensor(y)

        def torch_call():
            leaf = zt.detach().requires_grad_(True)
            value = torch.nn.functional.cross_entropy(leaf, yt)
            return value, torch.autograd.grad(value, leaf)[0]

        impls["torch eager"] = torch_call
    try:
        import jax
        import optax
    except ImportError:
        pass
    else:
        jax.config.update("jax_enable_x64", True)
        zj, yj = jax.numpy.asarray(z), jax.numpy.asarray(y)
        step = jax.jit(jax.value_and_grad(lambda a, b: optax.softmax_cross_entropy_with_integer_labels(a, b).mean()))
        impls["JAX jit (optax)"] = lambda: jax.block_until_ready(step(zj, yj))
    for fn in impls.values():  # warm-up: compiles, caches
        for _ in range(200):
            fn()
    from losskit.losses import _compiled

    _compiled.wait_for_compiles()
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            time.sleep(0.2)  # a library's spinning threads are not charged to the next one
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(values) for name, values in times.items()}


def torch_small_call_times(rounds: int = 9, calls: int = 1000):
    """Part 5: ``(case, torch eager us, losskit.torch us)`` per case, medians of ``rounds``."""
    import torch
    import torch.nn.functional as F

    import losskit.torch as lt
    from losskit.losses import _compiled

    rng = np.random.default_rng(0)
    rows = []
    for dtype in (torch.float32, torch.float64):
        for kind, (n, k) in (("softmax CE", (32, 10)), ("softmax CE", (256, 10)), ("softmax CE", (32, 1000)),
                             ("BCE-with-logits", (32, 1)), ("BCE-with-logits", (256, 100))):
            z = torch.tensor(rng.normal(size=(n, k)), dtype=dtype, requires_grad=True)
            if kind == "softmax CE":
                y = torch.tensor(rng.integers(0, k, n))
                peer, ours = (lambda z=z, y=y: F.cross_entropy(z, y)), lt.SoftmaxCrossEntropy()
            else:
                y = torch.tensor(rng.uniform(size=(n, k)) > 0.5, dtype=dtype)
                peer, ours = (lambda z=z, y=y: F.binary_cross_entropy_with_logits(z, y)), \
                    lt.BinaryCrossEntropyWithLogits()
            impls = {"torch": lambda peer=peer: peer().backward(),
                     "losskit.torch": lambda ours=ours, z=z, y=y: ours(z, y).backward()}
            for fn in impls.values():
                for _ in range(300):
                    fn()
            _compiled.wait_for_compiles()
            times = {name: [] for name in impls}
            for _ in range(rounds):
                for name, fn in impls.items():
                    start = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    times[name].append((time.perf_counter() - start) / calls)
            rows.append((f"{kind} {n} x {k} {str(dtype).split('.')[1]}", statistics.median(times["torch"]) * 1e6,
                         statistics.median(times["losskit.torch"]) * 1e6))
    return rows


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np, losskit as lk
t1 = time.perf_counter()
rng = np.random.default_rng(0)
if {kind!r} == "ce":
    z, y = rng.normal(size=(256, 10)), rng.integers(0, 10, 256)
    loss = lk.SoftmaxCrossEntropy()
else:
    z, y = rng.normal(size=1000), (rng.uniform(size=1000) > 0.5) * 1.0
    loss = lk.BinaryCrossEntropyWithLogits()
t2 = time.perf_counter(); loss.value_and_grad(z, y); t3 = time.perf_counter()
loss.value_and_grad(z, y); t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3)
"""


def first_call(kind: str):
    out = subprocess.run([sys.executable, "-c", FIRST_CALL.format(kind=kind)], capture_output=True, text=True,
                         check=True)
    return [float(v) for v in out.stdout.split()]


def first_eval(folder: Path, flag: str) -> tuple[float, float]:
    """Wall seconds of ``losskit eval FILE flag``: with an empty numba cache, then with it written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    z = rng.normal(size=(449, 10)).astype(np.float32)
    path = folder / "small.parquet"
    pq.write_table(pa.table({**{f"logit_{i}": z[:, i] for i in range(10)}, "target": rng.integers(0, 10, 449)}),
                   path)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / f"numba-cache{flag}")}
    losskit = shutil.which("losskit", path=str(Path(sys.executable).parent)) or "losskit"
    command = [losskit, "eval", str(path), "--json"] if flag == "--json" else \
        [losskit, "eval", str(path), "--html", str(folder / "report.html")]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


_STEP_PROCESS = """
from benchmarks.latency import numpy_step_times, torch_step_time
first = torch_step_time({steps})
step, in_loop, alone = numpy_step_times({steps})
numpy_only = numpy_step_times({steps}, with_loss=False)[0]
torch_step = min(first, torch_step_time({steps}))
print(f"| {{step * 1e3:.3f}} | {{torch_step * 1e3:.3f}} | {{torch_step / step:.2f}}x | {{in_loop * 1e3:.3f}} | "
      f"{{alone * 1e3:.3f}} | {{numpy_only * 1e3:.3f}} |")
"""


def step_processes(count: int, steps: int) -> None:
    """Part 1 in ``count`` new processes, one table row each."""
    print("| NumPy step (ms) | torch eager step (ms) | torch / NumPy | value_and_grad in the loop (ms) | alone (ms) "
          "| NumPy step without the loss call (ms) |\n|---|---|---|---|---|---|", flush=True)
    root = str(Path(__file__).resolve().parents[1])
    for _ in range(count):
        subprocess.run([sys.executable, "-c", _STEP_PROCESS.format(steps=steps)], check=True, cwd=root)


LOOP_CALLS = 5000
#: seconds a ``--loop-start`` process waits at most for the kernel
LOOP_CAP = 30.0
_LOOP_START = """
import time
import numpy as np
import losskit as lk
from losskit.losses import _compiled
z, y = np.random.default_rng(0).normal(size=(32, 10)), np.arange(32) % 10
loss = lk.SoftmaxCrossEntropy()
start = time.perf_counter()
calls, ready, first_calls = 0, None, None
while calls < {calls} or (ready is None and time.perf_counter() - start < {cap}):
    loss.value_and_grad(z, y)
    calls += 1
    if ready is None and _compiled._READY in _compiled._STATE.values():
        ready, answered = time.perf_counter() - start, calls
    if calls == {calls}:
        first_calls = time.perf_counter() - start
print(ready if ready is not None else float("nan"), answered if ready is not None else calls, first_calls)
"""


def loop_start(processes: int) -> list[str]:
    """Part 7: one table row per cache state over ``processes`` new processes. The "written" rows' cache is
    numba's own, written by a warm-up process first."""
    code = _LOOP_START.format(calls=LOOP_CALLS, cap=LOOP_CAP)
    rows = []
    for cache in ("written", "empty"):
        if cache == "written":  # a warm-up process writes the kernel to numba's cache (it waits for it at exit)
            subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        runs = []
        for _ in range(processes):
            with tempfile.TemporaryDirectory() if cache == "empty" else contextlib.nullcontext() as folder:
                env = {**os.environ, "NUMBA_CACHE_DIR": folder} if folder else None
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            runs.append([float(v) for v in out.stdout.split()])
        ready = sorted(r[0] for r in runs if r[0] == r[0])  # NaN: not within the cap
        never = len(runs) - len(ready)
        seconds = (f"{ready[0]:.2f}-{ready[-1]:.2f}" if ready else "") + \
            (f"{'; ' if ready else ''}{never} of {len(runs)} never within {LOOP_CAP:.0f} s" if never else "")
        first_calls = sorted(r[2] for r in runs)
        rows.append(f"| {cache} | {seconds} | {statistics.median(r[1] for r in runs):.0f} | "
                    f"{first_calls[0]:.2f}-{first_calls[-1]:.2f} |")
    return rows


def demo_times() -> dict[str, float]:
    """Part 4: seconds per task of the demo's second run in this process."""
    from losskit.demo.train import TASKS, run

    for task in TASKS:
        run(task)
    return {task: run(task).seconds for task in TASKS}


BLAS_SHAPES = [(1024, 1000), (4096, 1000)]
#: ``--blas-step --all-shapes``: from well under ``SERIAL_BELOW`` (2^18 logits) to well over it
ALL_BLAS_SHAPES = [(64, 1000), (256, 1000), (1024, 1000), (4096, 1000), (2048, 64)]


def blas_kernels(kind: str) -> None:
    """``--kernels``: which kernel every call of part 6 runs, whatever its size: ``default``
    (``SERIAL_BELOW`` decides), ``serial`` (the serial twins), ``parallel`` (the parallel kernels, numba's
    static division of the rows among its threads) or ``chunks`` (the parallel kernels, the rows handed
    out one block at a time, ``numba.set_parallel_chunksize(1)``)."""
    from losskit.losses import _compiled

    if kind == "serial":
        _compiled.SERIAL_BELOW = 1 << 62
    elif kind in ("parallel", "chunks"):
        _compiled.SERIAL_BELOW = 0
    if kind == "chunks":
        import numba

        from losskit.fused import threads

        threads.start()  # first: numba's call below starts its threads, which must spin as losskit's do
        numba.set_parallel_chunksize(1)


def blas_step_times(n: int, k: int, rounds: int = 7, steps: int = 50) -> dict[str, float]:
    """Part 6: seconds per step (and per loss call in the loop, alone, and per pair of products alone)."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, 512)).astype(np.float32)
    w = (rng.standard_normal((512, k)) * 0.05).astype(np.float32)
    y = rng.integers(0, k, size=n)
    loss = lk.SoftmaxCrossEntropy(impl="fused")
    z0 = h @ w
    times = {"step": [], "in the loop": [], "alone": [], "products": []}
    times_in_loop: list = []  # each loss call of this round's steps

    def step():
        z = h @ w
        start = time.perf_counter()
        _, g = loss.value_and_grad(z, y)
        times_in_loop.append(time.perf_counter() - start)
        return h.T @ g

    def timed(fn):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps

    runs = {"step": step, "alone": lambda: loss.value_and_grad(z0, y), "products": lambda: h.T @ (h @ w)}
    for run in runs.values():
        for _ in range(5):
            run()
    for _ in range(rounds):
        times_in_loop.clear()
        for name, run in runs.items():
            time.sleep(PAUSE)  # the threads of the run before (OpenBLAS's, OpenMP's) stop spinning
            times[name].append(timed(run))
        times["in the loop"].append(statistics.median(times_in_loop))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--markdown")
    parser.add_argument("--step-processes", type=int, default=0)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--torch-small", action="store_true")
    parser.add_argument("--blas-step", action="store_true")
    parser.add_argument("--loop-start", type=int, default=0, metavar="PROCESSES")
    parser.add_argument("--all-shapes", action="store_true", help="--blas-step: the logits of ALL_BLAS_SHAPES")
    parser.add_argument("--kernels", choices=["default", "serial", "parallel", "chunks"], default="default",
                        help="--blas-step: which kernel each call runs (see blas_kernels)")
    args = parser.parse_args()
    if (args.all_shapes or args.kernels != "default") and not args.blas_step:
        parser.error("--all-shapes and --kernels go with --blas-step")
    if args.blas_step:
        blas_kernels(args.kernels)
        print(f"kernels: {args.kernels}\n\n"
              "| logits | step (ms) | loss call in the loop (ms) | alone (ms) | products alone (ms) |\n"
              "|---|---|---|---|---|")
        for n, k in ALL_BLAS_SHAPES if args.all_shapes else BLAS_SHAPES:
            t = {name: value * 1e3 for name, value in blas_step_times(n, k).items()}
            print(f"| {n} x {k} | {t['step']:.2f} | {t['in the loop']:.2f} | {t['alone']:.2f} | {t['products']:.2f} |",
                  flush=True)
        return
    if args.loop_start:
        print(f"| numba cache | seconds until the kernel answers | calls the reference answered (median) | "
              f"the first {LOOP_CALLS} calls (s) |\n|---|---|---|---|")
        for row in loop_start(args.loop_start):
            print(row, flush=True)
        return
    if args.step_processes:
        step_processes(args.step_processes, args.steps)
        return
    if args.torch_small:
        print("| case | torch eager (us) | losskit.torch (us) | torch / losskit |\n|---|---|---|---|")
        for case, peer, ours in torch_small_call_times():
            print(f"| {case} | {peer:.1f} | {ours:.1f} | {peer / ours:.2f}x |", flush=True)
        return
    if args.demo:
        times = demo_times()
        print(", ".join(f"{task} {seconds:.3f} s" for task, seconds in times.items())
              + f"; the four tasks {sum(times.values()):.2f} s")
        return
    lines = []
    small = small_call_times()
    mine = small.pop("losskit")
    lines.append(f"| small call: softmax CE value_and_grad, 32 x 10 float64 | losskit {mine * 1e6:.1f} us | "
                 + ", ".join(f"{name} {t * 1e6:.1f} us ({t / mine:.2f}x)" for name, t in small.items()) + " | |")
    print(lines[-1], flush=True)
    for kind, label in (("ce", "softmax CE 256 x 10"), ("bce", "BCE-with-logits, 1000 elements")):
        runs = [first_call(kind) for _ in range(3)]
        lines.append(f"| first call: {label} | import {runs[0][0]:.2f} s | first call {runs[0][1]:.3f} s (fresh), "
                     f"{statistics.median(r[1] for r in runs[1:]):.3f} s (later processes) | second call "
                     f"{runs[0][2] * 1e3:.2f} ms |")
        print(lines[-1], flush=True)
    try:
        import pyarrow  # noqa: F401 - the [eval] extra
    except ImportError:
        pass
    else:
        with tempfile.TemporaryDirectory() as folder:
            for flag in ("--json", "--html"):
                fresh, cached = first_eval(Path(folder), flag)
                lines.append(f"| first `losskit eval {flag}`, 449 rows x 10 classes | empty numba cache "
                             f"{fresh:.2f} s | cache written {cached:.2f} s | |")
                print(lines[-1], flush=True)
    step, in_loop, alone = numpy_step_times(args.steps)
    numpy_only = numpy_step_times(args.steps, with_loss=False)[0]
    try:
        torch_step = torch_step_time(args.steps)
    except ImportError:
        torch_step = float("nan")
    lines.append(f"| training step (NumPy MLP, digits-sized, float64) | step {step * 1e3:.3f} ms (torch eager "
                 f"{torch_step * 1e3:.3f} ms: {torch_step / step:.2f}x) | value_and_grad in the loop "
                 f"{in_loop * 1e3:.3f} ms | alone {alone * 1e3:.3f} ms ({in_loop / alone:.2f}x); the step "
                 f"without the loss call {numpy_only * 1e3:.3f} ms (torch eager's whole step: "
                 f"{torch_step / numpy_only:.2f}x) |")
    print(lines[-1], flush=True)
    text = "| case | | | |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)


if __name__ == "__main__":
    main()
