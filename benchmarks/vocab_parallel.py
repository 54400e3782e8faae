"""The vocab-parallel losses (``losskit.torch.distributed``) against torch eager on the same logits, one process.

    python -m benchmarks.vocab_parallel                 # 4096 x 32000 logits; a 2048 x 512 by 32000 layer
    python -m benchmarks.vocab_parallel --repeats 9

A gloo group of one process on 127.0.0.1 (the collectives run and return at once): what each rank computes,
without the network. Forward + backward, float32, medians of alternating rounds (values and gradients
checked equal to torch's first, rtol 1e-4):
``vocab_parallel_cross_entropy`` against ``F.cross_entropy`` on the same ``[N, V]`` logits, and
``vocab_parallel_linear_cross_entropy`` against ``F.cross_entropy(hidden @ classifier.T, target)``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from losskit.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(_free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(4096, 32000, generator=gen).requires_grad_(True)
        y = torch.randint(0, 32000, (4096,), generator=gen)
        h = torch.randn(2048, 512, generator=gen).requires_grad_(True)
        c = (torch.randn(32000, 512, generator=gen) * 0.05).requires_grad_(True)
        yy = torch.randint(0, 32000, (2048,), generator=gen)

        def step(loss, *leaves):
            def run():
                loss().backward()
                for leaf in leaves:
                    leaf.grad = None
            return run

        cases = {
            "cross-entropy 4096 x 32000": {
                "losskit vocab-parallel": step(lambda: vocab_parallel_cross_entropy(z, y, vocab_start=0), z),
                "torch eager": step(lambda: F.cross_entropy(z, y), z)},
            "linear CE 2048 x 512 -> 32000": {
                "losskit vocab-parallel": step(lambda: vocab_parallel_linear_cross_entropy(h, c, yy, vocab_start=0),
                                               h, c),
                "torch eager": step(lambda: F.cross_entropy(h @ c.T, yy), h, c)}}
        print("| case | losskit vocab-parallel ms | torch eager ms | torch / losskit |")
        print("|---|---|---|---|")
        # the two sides compute the same loss: values and gradients agree before anything is timed
        for ours, theirs, leaves in (
                (lambda: vocab_parallel_cross_entropy(z, y, vocab_start=0), lambda: F.cross_entropy(z, y), (z,)),
                (lambda: vocab_parallel_linear_cross_entropy(h, c, yy, vocab_start=0),
                 lambda: F.cross_entropy(h @ c.T, yy), (h, c))):
            results = []
            for loss in (ours, theirs):
                value = loss()
                results.append((value.detach(), *torch.autograd.grad(value, leaves)))
            for got, want in zip(*results, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-8)
        for case, runs in cases.items():
            times = {name: [] for name in runs}
            for run in runs.values():
                run()  # warm-up
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append((time.perf_counter() - start) * 1e3)
            ours, theirs = (statistics.median(times[name]) for name in runs)
            print(f"| {case} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x |")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
