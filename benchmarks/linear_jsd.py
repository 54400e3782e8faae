"""Fused linear generalised JSD (GKD distillation), forward + backward, against naive torch eager.

    python -m benchmarks.linear_jsd            # 2048 tokens, D = D_teacher = 1024, V = 32768, beta = 0.5
    python -m benchmarks.linear_jsd --smoke    # tiny sizes, one repeat

Each (implementation, repeat) runs in its own process, the implementations alternating within a
round: seconds of one forward + backward (the student's three gradients), and the peak resident
memory above the inputs (``VmHWM`` after a reset, as :mod:`benchmarks.posttraining` measures it).
Float32. The naive computation materialises both logits, takes ``log_softmax`` and the formula, and
differentiates with torch autograd; before any timing every implementation's value and gradients
are checked against it on a small problem.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .posttraining import _reset_peak, _rss

FULL = {"tokens": 2048, "features": 1024, "teacher_features": 1024, "vocab": 32768}
SMOKE = {"tokens": 64, "features": 16, "teacher_features": 24, "vocab": 300}
BETA = 0.5


def _inputs(size, seed=0):
    rng = np.random.default_rng(seed)
    n, d, dt, v = size["tokens"], size["features"], size["teacher_features"], size["vocab"]
    target = rng.integers(0, v, size=n)
    target[: n // 4] = -100  # the prompt
    return {"student_hidden": rng.standard_normal((n, d), dtype=np.float32),
            "student_classifier": rng.standard_normal((v, d), dtype=np.float32) * np.float32(0.03),
            "teacher_hidden": rng.standard_normal((n, dt), dtype=np.float32),
            "teacher_classifier": rng.standard_normal((v, dt), dtype=np.float32) * np.float32(0.03),
            "target": target}


def naive(a):
    import torch

    h = torch.from_numpy(a["student_hidden"]).requires_grad_(True)
    c = torch.from_numpy(a["student_classifier"]).requires_grad_(True)
    with torch.no_grad():
        t = torch.log_softmax(torch.from_numpy(a["teacher_hidden"]) @ torch.from_numpy(a["teacher_classifier"]).T, -1)
    s = torch.log_softmax(h @ c.T, -1)
    m = torch.logsumexp(torch.stack([s + np.log(1 - BETA), t + np.log(BETA)]), dim=0)
    per_token = BETA * (t.exp() * (t - m)).sum(-1) + (1 - BETA) * (s.exp() * (s - m)).sum(-1)
    keep = torch.from_numpy(a["target"] != -100)
    value = per_token[keep].sum() / keep.sum()
    value.backward()
    return value.item(), h.grad.numpy(), c.grad.numpy()


def losskit_numpy(a):
    import losskit as lk

    value, grads = lk.linear_jsd_loss_value_and_grad(a["student_hidden"], a["student_classifier"], a["teacher_hidden"],
                                                     a["teacher_classifier"], a["target"], beta=BETA)
    return float(value), grads[0], grads[1]


def losskit_torch(a):
    import torch

    import losskit.torch as lt

    h = torch.from_numpy(a["student_hidden"]).requires_grad_(True)
    c = torch.from_numpy(a["student_classifier"]).requires_grad_(True)
    value = lt.LinearJSDLoss(beta=BETA)(h, c, torch.from_numpy(a["teacher_hidden"]),
                                        torch.from_numpy(a["teacher_classifier"]), torch.from_numpy(a["target"]))
    value.backward()
    return value.item(), h.grad.numpy(), c.grad.numpy()


IMPLEMENTATIONS = {"torch naive": naive, "losskit linear_jsd_loss (NumPy)": losskit_numpy,
                   "losskit.torch LinearJSDLoss": losskit_torch}


def check(size) -> None:
    small = _inputs({**size, "tokens": 32, "vocab": min(size["vocab"], 512)}, seed=1)
    reference = naive(small)
    for name, fn in IMPLEMENTATIONS.items():
        for mine, ref in zip(fn(small), reference, strict=True):
            scale = float(np.abs(ref).max())
            if not np.allclose(mine, ref, rtol=1e-4, atol=1e-4 * scale):
                raise SystemExit(f"{name} disagrees with the naive computation")


def _child(name, size) -> dict:
    fn = IMPLEMENTATIONS[name]
    fn(_inputs({**size, "tokens": 4, "vocab": 64}))  # imports and JIT loads, not measured
    arrays = _inputs(size)
    _reset_peak()
    base = _rss()
    start = time.perf_counter()
    fn(arrays)
    return {"seconds": time.perf_counter() - start, "extra": _rss() - base}


def _measure(name, size) -> dict:
    command = [sys.executable, "-m", "benchmarks.linear_jsd", "--child", json.dumps([name, size])]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*json.loads(args.child))))
        return
    size = SMOKE if args.smoke else FULL
    repeats = 1 if args.smoke else args.repeats
    check(size)
    logits_mib = size["tokens"] * size["vocab"] * 4 / 2**20
    lines = [f"Command: `python -m benchmarks.linear_jsd{' --smoke' if args.smoke else ''}`; {size['tokens']} tokens, "
             f"D = {size['features']}, D_teacher = {size['teacher_features']}, V = {size['vocab']}, beta = {BETA}, "
             f"float32 (one logits array {logits_mib:.0f} MiB); {os.cpu_count()} cores, load average at start "
             f"{os.getloadavg()[0]:.2f}; median of {repeats} alternating rounds, one process each.", "",
             "| implementation | seconds (median) | min | max | speed-up vs naive | extra peak MiB |",
             "|---|---|---|---|---|---|"]
    runs = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(repeats):
        for name in IMPLEMENTATIONS:
            runs[name].append(_measure(name, size))
    reference = statistics.median(r["seconds"] for r in runs["torch naive"])
    for name, results in runs.items():
        seconds = [r["seconds"] for r in results]
        med = statistics.median(seconds)
        extra = statistics.median(r["extra"] for r in results) / 2**20
        lines.append(f"| {name} | {med:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | {reference / med:.2f}x | "
                     f"{extra:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
