"""Two gloo ranks on 127.0.0.1 check vocab_parallel_cross_entropy against the full-vocabulary loss.

Run by tests/test_torch_distributed.py as ``python tests/workers/vocab_parallel.py PORT``; exits 0
when every case matches on both ranks.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import losskit as lk
import losskit.fused.linear  # noqa: F401 - lk.fused.linear below
from losskit.torch.distributed import vocab_parallel_cross_entropy

N, V, WORLD = 9, 10, 2


def _cases():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(N, V, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, V, (N,), generator=gen)
    y[2] = -100
    cw = torch.rand(V, generator=gen, dtype=torch.float64) + 0.5
    w = torch.rand(N, generator=gen, dtype=torch.float64) + 0.1
    return z, y, cw, w


def _full_reference(z, y, fn):
    full = z.clone().requires_grad_(True)
    value = fn(full)
    upstream = torch.linspace(0.5, 1.5, value.numel(), dtype=torch.float64).reshape(value.shape)
    (value * upstream).sum().backward()
    return value.detach(), full.grad, upstream


def _check(rank, name, z, y, options, reference_fn):
    lo, hi = rank * V // WORLD, (rank + 1) * V // WORLD
    value_ref, grad_ref, upstream = _full_reference(z, y, reference_fn)
    shard = z[:, lo:hi].clone().requires_grad_(True)
    cw = options.pop("class_weight", None)
    value = vocab_parallel_cross_entropy(shard, y, vocab_start=lo, class_weight=None if cw is None else cw[lo:hi],
                                         **options)
    (value * upstream).sum().backward()
    torch.testing.assert_close(value.detach(), value_ref, rtol=1e-12, atol=1e-12, msg=f"{name}: value")
    torch.testing.assert_close(shard.grad, grad_ref[:, lo:hi], rtol=1e-10, atol=1e-12, msg=f"{name}: grad")


def _check_linear(rank, z, y, cw, w):
    """The sharded fused linear CE against losskit's fused linear CE on the full layer."""
    from losskit.torch.distributed import vocab_parallel_linear_cross_entropy

    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    layer = torch.randn(V, 6, generator=gen, dtype=torch.float64)
    bias = torch.randn(V, generator=gen, dtype=torch.float64)
    options = {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3}
    value_ref, (gh_ref, gw_ref, gb_ref) = lk.fused.linear.linear_cross_entropy_value_and_grad(
        hidden, layer, y, bias=bias, class_weight=cw, example_weight=w, **options)
    lo, hi = rank * V // WORLD, (rank + 1) * V // WORLD
    h = hidden.clone().requires_grad_(True)
    shard = layer[lo:hi].clone().requires_grad_(True)
    b = bias[lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_linear_cross_entropy(h, shard, y, vocab_start=lo, bias_shard=b, class_weight=cw[lo:hi],
                                                weight=w, chunk_size=4, **options)
    (3.0 * value).backward()
    torch.testing.assert_close(value.detach(), value_ref, rtol=1e-12, atol=1e-12, msg="linear: value")
    torch.testing.assert_close(h.grad, 3.0 * gh_ref, rtol=1e-10, atol=1e-12, msg="linear: grad hidden")
    torch.testing.assert_close(shard.grad, 3.0 * gw_ref[lo:hi], rtol=1e-10, atol=1e-12, msg="linear: grad weight")
    torch.testing.assert_close(b.grad, 3.0 * gb_ref[lo:hi], rtol=1e-10, atol=1e-12, msg="linear: grad bias")


def run(rank, port):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=__import__("datetime").timedelta(seconds=60))
    try:
        z, y, cw, w = _cases()
        y_plain = torch.where(y == -100, torch.zeros_like(y), y)
        _check(rank, "plain", z, y_plain, {}, lambda f: F.cross_entropy(f, y_plain))
        _check(rank, "ignore+smoothing", z, y, {"ignore_index": -100, "label_smoothing": 0.1},
               lambda f: F.cross_entropy(f, y, ignore_index=-100, label_smoothing=0.1))
        _check(rank, "none", z, y_plain, {"reduction": "none"},
               lambda f: F.cross_entropy(f, y_plain, reduction="none"))
        # losskit semantics for class weights with smoothing: the core loss on the gathered logits
        _check(rank, "class_weight+weight+smoothing", z, y,
               {"class_weight": cw, "weight": w, "ignore_index": -100, "label_smoothing": 0.2},
               lambda f: lk.softmax_cross_entropy(f, y, class_weight=cw, weight=w, ignore_index=-100,
                                                  label_smoothing=0.2))
        _check(rank, "z_loss", z, y_plain, {"z_loss": 1e-2},
               lambda f: (F.cross_entropy(f, y_plain, reduction="none")
                          + 1e-2 * torch.logsumexp(f, -1) ** 2).mean())
        _check(rank, "normalizer", z, y_plain, {"normalizer": 4.0, "reduction": "mean"},
               lambda f: F.cross_entropy(f, y_plain, reduction="sum") / 4.0)
        _check_linear(rank, z, y, cw, w)
        everything = torch.full((N,), -100)
        shard = z[:, :V // WORLD] if rank == 0 else z[:, V // WORLD:]
        zero = vocab_parallel_cross_entropy(shard, everything, vocab_start=rank * V // WORLD, ignore_index=-100)
        assert float(zero) == 0.0, "all-ignored mean must be 0"
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(int(sys.argv[1]),), nprocs=WORLD, join=True)
    print("vocab-parallel: all cases match")
