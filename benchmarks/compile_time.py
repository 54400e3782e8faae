"""What a first call waits for: the compile of its kernels, each measured in a new process with an empty
numba cache, and their load from the disk cache by a second process.

    python -m benchmarks.compile_time                          # every loss below, float64 and float32
    python -m benchmarks.compile_time --loss softmax_focal_loss --dtype float64   # one loss's long-row kernel
    python -m benchmarks.compile_time --loss js_divergence --dtype float64 --repeats 3
    python -m benchmarks.compile_time --large-only   # the large call alone: all a first large call waits for
    PYTHONPATH=/other/checkout/src python -m benchmarks.compile_time   # another tree's kernels

Per process: a small call (one row: the serial twin) and then a large one (4M logits: 500,000 rows of 8
classes, 400,000 of 10 or 13,333 of 300: the parallel kernel; with ``--large-only`` the large call alone,
its twin's column "nan"), each timed twice; the first call less the second is its compile (or load)
time. The first process starts from an empty cache directory, the second from what the first left
there. Medians of ``--repeats`` rounds. The compile is single-threaded: run it on a quiet machine. A
kernel that calls a row function of its own (:data:`losskit.fused.kernels.ROW`) compiles it once per
process: the twin's time holds it, and the parallel kernel's after it does not (``--large-only``: the
parallel kernel's holds it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

#: name: (constructor, classes per row, target: "labels", "probabilities" (rows that sum to 1) or "logits"
#: (normal numbers, a teacher's logits))
LOSSES = {"js_divergence": ("JSDivergence(beta=0.5, impl='fused')", 8, "logits"),
          "distillation_loss": ("DistillationLoss(temperature=2.0, impl='fused')", 8, "logits"),
          # rows of more than 256 classes: the row kernel softmax_ce_rows, in its three forms
          "softmax_cross_entropy": ("SoftmaxCrossEntropy(impl='fused')", 300, "labels"),
          "poly_cross_entropy": ("PolyCrossEntropy(epsilon=1.0, impl='fused')", 300, "labels"),
          "softmax_focal_loss": ("SoftmaxFocalLoss(gamma=2.0, impl='fused')", 300, "labels"),
          # rows of 10 classes: the blocked kernels (softmax_ce_short_rows, focal_short_rows, kl_dense_short_rows)
          "softmax_cross_entropy_10": ("SoftmaxCrossEntropy(impl='fused')", 10, "labels"),
          "softmax_focal_loss_10": ("SoftmaxFocalLoss(gamma=2.0, impl='fused')", 10, "labels"),
          "kl_divergence_10": ("KLDivergence(impl='fused')", 10, "probabilities"),
          # the row kernels of probability targets (rows.kl_dense_rows, rows.focal_rows)
          "kl_divergence": ("KLDivergence(impl='fused')", 300, "probabilities"),
          "softmax_focal_loss_probabilities": ("SoftmaxFocalLoss(gamma=2.0, impl='fused')", 300, "probabilities")}

_CHILD = """
import json, time, numpy as np, losskit as lk
from losskit.losses import _compiled
_compiled.ANSWER_WHILE_COMPILING = 0  # the call waits for its kernel: that wait is what is measured
loss = lk.{loss}
rng = np.random.default_rng(0)
out = {{}}
for label, rows in {calls}:
    z = rng.normal(size=(rows, {classes})).astype("{dtype}")
    if "{target}" == "labels":
        t = rng.integers(0, {classes}, rows)
    elif "{target}" == "probabilities":
        t = rng.random(z.shape).astype("{dtype}")
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.normal(size=z.shape).astype("{dtype}")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        loss.value_and_grad(z, t)
        times.append(time.perf_counter() - start)
    out[label] = times[0] - times[1]
out.setdefault("serial", float("nan"))
print(json.dumps(out))
"""


def _run(loss: str, dtype: str, cache: str, large_only: bool) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    constructor, classes, target = LOSSES[loss]
    large = 4_000_000 // classes
    calls = (("parallel", large),) if large_only else (("serial", 1), ("parallel", large))
    code = _CHILD.format(loss=constructor, dtype=dtype, calls=calls, classes=classes, target=target)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--dtype", nargs="*", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-only", action="store_true", help="no small call first: the large call compiles all")
    args = parser.parse_args(argv)
    print("| loss | dtype | serial twin: compile s | parallel kernel: compile s "
          "| second process: load s (twin, parallel) |")
    print("|---|---|---|---|---|")
    for loss in args.loss:
        for dtype in args.dtype:
            cold, warm = [], []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(prefix="losskit-compile-") as cache:
                    cold.append(_run(loss, dtype, cache, args.large_only))
                    warm.append(_run(loss, dtype, cache, args.large_only))
            med = {key: {part: statistics.median(r[part] for r in runs) for part in ("serial", "parallel")}
                   for key, runs in (("cold", cold), ("warm", warm))}
            print(f"| {loss} | {dtype} | {med['cold']['serial']:.2f} | {med['cold']['parallel']:.2f} | "
                  f"{med['warm']['serial']:.2f}, {med['warm']['parallel']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
