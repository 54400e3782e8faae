"""Peak extra memory and time of softmax cross-entropy forward+backward in PyTorch (CPU).

    python benchmarks/torch_memory.py [--rows 4096] [--classes 32000] [--repeats 5] [--from-a-layer]

Each configuration runs in its own process, so its peak RSS is its own. "Extra" is the peak
RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` once the logits and labels exist, so
their own 1x is not counted) during forward+backward minus the RSS at that reset; the gradient
``logits.grad`` (1x) is part of every row's figure. Times are medians of ``--repeats``
forward+backward passes after one warm-up, in the same process; the last column compares with
``F.cross_entropy`` given the same options. Prints a Markdown table.

``--from-a-layer``: the logits are not a leaf the caller holds but the output of a linear layer
(``h @ W.T``, D = 64) that nobody keeps but the loss's graph, as in ``criterion(model(x), y)``; the
figure then includes the logits themselves (made after the reset) and the gradients of ``h`` and ``W``
(small).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "F.cross_entropy": "import torch.nn.functional as F\nfn = lambda z, y: F.cross_entropy(z, y)",
    "losskit.torch.SoftmaxCrossEntropy": "import losskit.torch as lt\nfn = lt.SoftmaxCrossEntropy()",
    "F.cross_entropy, smoothing 0.1, ignore_index": (
        "import torch.nn.functional as F\n"
        "fn = lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1, ignore_index=-100)"),
    "losskit.torch.SoftmaxCrossEntropy, smoothing 0.1, ignore_index": (
        "import losskit.torch as lt\nfn = lt.SoftmaxCrossEntropy(label_smoothing=0.1, ignore_index=-100)"),
}


def _rss_bytes() -> int:
    """Peak RSS since the last reset (VmHWM; ru_maxrss would carry the parent's peak over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _child(name: str, rows: int, classes: int, repeats: int, from_a_layer: bool) -> None:
    import torch

    torch.set_num_threads(1)
    namespace: dict = {}
    exec(CONFIGS[name], namespace)
    fn = namespace["fn"]
    # import and dispatch costs, before the baseline; 16 full rows (more than losskit's SERIAL_BELOW
    # elements), so that the kernel the measured call runs is the one loaded here, not in the measurement
    small = torch.randn(16, classes, requires_grad=True)
    fn(small, torch.zeros(16, dtype=torch.long)).backward()
    labels = torch.randint(0, classes, (rows,))
    if from_a_layer:
        hidden, classifier = torch.randn(rows, 64, requires_grad=True), torch.randn(classes, 64, requires_grad=True)
        leaves = (hidden, classifier)

        def step():
            fn(hidden @ classifier.T, labels).backward()  # the logits: held by the loss's graph alone
    else:
        logits = torch.randn(rows, classes, requires_grad=True)
        leaves = (logits,)

        def step():
            fn(logits, labels).backward()
    _reset_peak()
    baseline = _rss_bytes()
    times = []
    for _ in range(repeats + 1):
        for leaf in leaves:
            leaf.grad = None
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _rss_bytes()
    print(json.dumps({"extra": peak - baseline, "median": statistics.median(times[1:]), "logits": rows * classes * 4}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--from-a-layer", action="store_true",
                        help="logits made by a linear layer inside the step, held by nothing else")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.rows, args.classes, args.repeats, args.from_a_layer)
        return
    results = {}
    for name in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--rows", str(args.rows),
                              "--classes", str(args.classes), "--repeats", str(args.repeats),
                              *(["--from-a-layer"] if args.from_a_layer else [])],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    ref = results["F.cross_entropy"]

    def peer(name: str) -> dict:  # the F.cross_entropy run with the same options
        return results[name.replace("losskit.torch.SoftmaxCrossEntropy", "F.cross_entropy")]

    source = "logits from a linear layer (D = 64), held by the graph alone" if args.from_a_layer else "leaf logits"
    print(f"softmax CE forward+backward, {args.rows} x {args.classes} float32, {source}, 1 thread, "
          f"median of {args.repeats}; logits = {ref['logits'] / 2**20:.0f} MiB")
    print("| implementation | extra peak memory (MiB) | x logits | time (ms) "
          "| time vs F.cross_entropy, same options |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['extra'] / 2**20:.0f} | {r['extra'] / r['logits']:.2f} | "
              f"{1e3 * r['median']:.0f} | {r['median'] / peer(name)['median']:.2f} |")


if __name__ == "__main__":
    main()
