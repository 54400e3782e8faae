"""Two gloo ranks on 127.0.0.1 check the vocab-parallel losses against the full-vocabulary ones.

Run by tests/test_torch_distributed.py as ``python tests/workers/vocab_parallel.py PORT``; exits 0
and prints "all cases match" when every case matches on both ranks. The vocabulary is split
unevenly (3 and 7 columns) so that nothing depends on equal shards; each rank's reference is
computed on the logits gathered from both ranks.
"""

from __future__ import annotations

import datetime
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import losskit as lk
import losskit.losses.linear  # noqa: F401 - lk.losses.linear below
import losskit.torch
import losskit.torch.distributed
from losskit.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

N, V, WORLD = 9, 10, 2
BOUNDS = (0, 3, V)  # rank r holds vocabulary columns BOUNDS[r] .. BOUNDS[r + 1]


def _cases():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(N, V, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, V, (N,), generator=gen)
    y[2] = -100
    y[5] = 1  # a label on the small shard
    cw = torch.rand(V, generator=gen, dtype=torch.float64) + 0.5
    w = torch.rand(N, generator=gen, dtype=torch.float64) + 0.1
    return z, y, cw, w


def _gathered(shard, group):
    """The full [N, V] logits, gathered from every rank's shard (pickled: exact, any shard width)."""
    pieces = [None] * WORLD
    dist.all_gather_object(pieces, shard.detach(), group=group)
    return torch.cat(pieces, dim=1)


def _check(rank, name, z, y, options, reference_fn, group=None):
    lo, hi = BOUNDS[rank], BOUNDS[rank + 1]
    shard = z[:, lo:hi].clone().requires_grad_(True)
    full = _gathered(shard, group).requires_grad_(True)
    value_ref = reference_fn(full)
    upstream = torch.linspace(0.5, 1.5, value_ref.numel(), dtype=value_ref.dtype).reshape(value_ref.shape)
    (value_ref * upstream).sum().backward()
    cw = options.pop("class_weight", None)
    value = vocab_parallel_cross_entropy(shard, y, vocab_start=lo, class_weight=None if cw is None else cw[lo:hi],
                                         group=group, **options)
    (value * upstream).sum().backward()
    tol = {"rtol": 1e-12, "atol": 1e-12} if z.dtype == torch.float64 else {"rtol": 2e-6, "atol": 1e-6}
    torch.testing.assert_close(value.detach(), value_ref.detach(), **tol, msg=f"{name}: value")
    torch.testing.assert_close(shard.grad, full.grad[:, lo:hi], **tol, msg=f"{name}: grad")


def _check_linear(rank, y, cw, w):
    """The sharded fused linear CE against losskit's fused linear CE on the full layer."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    layer = torch.randn(V, 6, generator=gen, dtype=torch.float64)
    bias = torch.randn(V, generator=gen, dtype=torch.float64)
    options = {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3}
    value_ref, (gh_ref, gw_ref, gb_ref) = lk.losses.linear.linear_cross_entropy_value_and_grad(
        hidden, layer, y, bias=bias, class_weight=cw, weight=w, **options)
    lo, hi = BOUNDS[rank], BOUNDS[rank + 1]
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
    return h, shard


def _check_linear_half(rank):
    """float16 over 100,000 classes (50,000 a rank): it was NaN (the sweep summed the exps in float16).
    Against the core's fused linear CE of the same float16 layer (computed in float32, rounded once)."""
    gen = torch.Generator().manual_seed(2)
    vocab, bounds = 100_000, (0, 50_000, 100_000)
    hidden = torch.randn(N, 8, generator=gen).half()
    layer = (torch.randn(vocab, 8, generator=gen) * 0.01).half()
    target = torch.randint(0, vocab, (N,), generator=gen)
    value_ref, (gh_ref, gw_ref, _) = lk.losses.linear.linear_cross_entropy_value_and_grad(
        hidden.numpy(), layer.numpy(), target.numpy())
    lo, hi = bounds[rank], bounds[rank + 1]
    h = hidden.clone().requires_grad_(True)
    shard = layer[lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_linear_cross_entropy(h, shard, target, vocab_start=lo, n_vocab=vocab)
    value.backward()
    assert value.dtype == h.grad.dtype == shard.grad.dtype == torch.float16
    tol = {"rtol": 2e-3, "atol": 1e-7}
    torch.testing.assert_close(value.detach(), torch.from_numpy(np.asarray(value_ref)), **tol, msg="half: value")
    torch.testing.assert_close(h.grad, torch.from_numpy(gh_ref), **tol, msg="half: grad hidden")
    torch.testing.assert_close(shard.grad, torch.from_numpy(gw_ref[lo:hi]), **tol, msg="half: grad weight")


def _check_review_findings(rank):
    """Found in review: (a) shards of different widths with the default chunk size ran different numbers
    of chunks (rows sized from each rank's own width) and gloo aborted on the unpaired all-reduces; (b) an
    ignored token's NaN hidden state made the shard's gradient NaN; (c) uint8 / int8 labels compared with
    V = 300 wrapped (a valid 200 refused). Against losskit's fused linear CE on the full layer."""
    gen = torch.Generator().manual_seed(3)
    vocab, rows, dim = 1001, 4096, 4  # 501 + 500: a default chunk of 2^25 / 501 = 66,976 rows, / 500 = 67,108
    bounds = (0, 501, vocab)
    hidden = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    layer = 0.1 * torch.randn(vocab, dim, generator=gen, dtype=torch.float64)
    target = torch.randint(0, vocab, (rows,), generator=gen)
    target[7] = -100
    lo, hi = bounds[rank], bounds[rank + 1]
    value_ref, (gh_ref, gw_ref, _) = lk.losses.linear.linear_cross_entropy_value_and_grad(
        hidden.numpy(), layer.numpy(), target.numpy(), ignore_index=-100, chunk_size=3000)
    poisoned = hidden.clone()
    poisoned[7] = float("nan")  # the ignored token's
    h = poisoned.clone().requires_grad_(True)
    shard = layer[lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_linear_cross_entropy(h, shard, target, vocab_start=lo, ignore_index=-100,
                                                chunk_size=3000)  # 2 chunks a rank, of 3000 and 1096 rows
    value.backward()
    torch.testing.assert_close(value.detach(), torch.tensor(float(value_ref), dtype=torch.float64), rtol=1e-12,
                               atol=0, msg="review: value")
    torch.testing.assert_close(shard.grad, torch.from_numpy(gw_ref[lo:hi]), rtol=1e-10, atol=1e-12,
                               msg="review: grad weight with a NaN ignored hidden state")
    torch.testing.assert_close(h.grad, torch.from_numpy(gh_ref), rtol=1e-10, atol=1e-12, msg="review: grad hidden")
    # the default chunk's budget made small, so that BOUNDS' shards of 3 and 7 columns would get chunks of
    # 16 // 3 = 5 and 16 // 7 = 2 rows from their own widths (the budget is read when the call sizes its chunks)
    budget = lk.losses.linear.CHUNK_ELEMENTS
    lk.losses.linear.CHUNK_ELEMENTS = 16
    try:
        few, layer_few, few_target = hidden[:N], layer[:V], target[:N].clamp(min=0) % V
        small = vocab_parallel_linear_cross_entropy(few, layer_few[BOUNDS[rank]:BOUNDS[rank + 1]], few_target,
                                                    vocab_start=BOUNDS[rank])
    finally:
        lk.losses.linear.CHUNK_ELEMENTS = budget
    torch.testing.assert_close(small, torch.tensor(float(lk.linear_cross_entropy(
        few.numpy(), layer_few.numpy(), few_target.numpy())), dtype=torch.float64), rtol=1e-12,
        atol=0, msg="review: uneven shards, default chunk size")
    labels = torch.tensor([10, 120, 200, 5])
    z = torch.randn(4, 300, generator=gen, dtype=torch.float64)
    half = (0, 150, 300)
    for dtype in (torch.uint8, torch.int8):
        mine = labels if dtype == torch.uint8 else labels.clamp(max=127)
        got = vocab_parallel_cross_entropy(z[:, half[rank]:half[rank + 1]], mine.to(dtype), vocab_start=half[rank])
        torch.testing.assert_close(got, F.cross_entropy(z, mine), rtol=1e-12, atol=0, msg=f"review: {dtype} labels")


def _check_second_review(rank):
    """Found in a second review: (a) a rank of no vocabulary column (a vocabulary smaller than the group) raised
    IndexError from torch.max on an empty row, and the other rank waited in its collective until gloo timed
    out; (b) float32 lost precision with logits far from 0: the loss and gradient were formed from lse = max +
    log S, rounded to the max's precision (3e-4 off at logits of 1e4), and a sure row's loss of 1e-8 was 0 (log
    of 1 + 1e-8); (c) a given n_vocab unequal to the shards' widths was taken (smoothing over other columns).
    Against F.cross_entropy in float64 on the same (float32-rounded) logits."""
    gen = torch.Generator().manual_seed(4)
    y = torch.randint(0, V, (N,), generator=gen)
    z64 = torch.randn(N, V, generator=gen, dtype=torch.float64) * 3
    cw = torch.rand(V, generator=gen, dtype=torch.float64) + 0.5
    bounds = (0, 0, V)  # rank 0 holds no column
    lo, hi = bounds[rank], bounds[rank + 1]
    for name, options, reference in (
            ("empty shard", {}, lambda f: F.cross_entropy(f, y)),
            ("empty shard+smoothing+class_weight", {"label_smoothing": 0.1, "class_weight": cw},
             lambda f: lk.softmax_cross_entropy(f, y, class_weight=cw, label_smoothing=0.1))):
        shard = z64[:, lo:hi].clone().requires_grad_(True)
        full = z64.clone().requires_grad_(True)
        reference(full).backward()
        options = dict(options)
        if "class_weight" in options:
            options["class_weight"] = options["class_weight"][lo:hi]
        value = vocab_parallel_cross_entropy(shard, y, vocab_start=lo, **options)
        value.backward()
        torch.testing.assert_close(value.detach(), reference(z64), rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(shard.grad, full.grad[:, lo:hi], rtol=1e-12, atol=1e-12, msg=f"{name}: grad")
    hidden = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    layer = torch.randn(V, 6, generator=gen, dtype=torch.float64)
    value_ref, (gh_ref, gw_ref, _) = lk.losses.linear.linear_cross_entropy_value_and_grad(
        hidden, layer, y, label_smoothing=0.1)
    h = hidden.clone().requires_grad_(True)
    shard = layer[lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_linear_cross_entropy(h, shard, y, vocab_start=lo, label_smoothing=0.1, chunk_size=4)
    value.backward()
    torch.testing.assert_close(value.detach(), value_ref, rtol=1e-12, atol=1e-12, msg="empty shard: linear")
    torch.testing.assert_close(h.grad, gh_ref, rtol=1e-10, atol=1e-12, msg="empty shard: linear grad hidden")
    torch.testing.assert_close(shard.grad, gw_ref[lo:hi], msg="empty shard: linear grad weight")
    # (b) float32 logits of 1e4 (exact float32 values; their float64 loss the reference), a sure row among them
    z32 = (torch.randn(N, V, generator=gen) * 3 + 1e4)
    z32[0] = 1e4
    z32[0, y[0]] = 1e4 + 20.5  # loss (V - 1) e^-20.5 = 1.1e-8
    lo, hi = BOUNDS[rank], BOUNDS[rank + 1]
    full = z32.double().requires_grad_(True)
    exact = F.cross_entropy(full, y, reduction="none")
    exact.sum().backward()
    shard = z32[:, lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_cross_entropy(shard, y, vocab_start=lo, reduction="none")
    value.sum().backward()
    torch.testing.assert_close(value.double(), exact.detach(), rtol=1e-5, atol=0, msg="float32 at 1e4: value")
    torch.testing.assert_close(shard.grad.double(), full.grad[:, lo:hi], rtol=0, atol=1e-6, msg="float32 at 1e4: grad")
    # the linear form: bias alone (hidden 0), so the logits are the bias exactly and its gradient is p - y
    bias = z32[0].clone()
    zero_h = torch.zeros(1, 6, requires_grad=True)
    b = bias[lo:hi].clone().requires_grad_(True)
    value = vocab_parallel_linear_cross_entropy(zero_h, torch.zeros(hi - lo, 6), y[:1], vocab_start=lo, bias_shard=b)
    value.backward()
    full = bias.double().requires_grad_(True)
    exact = F.cross_entropy(full[None], y[:1])
    exact.backward()
    torch.testing.assert_close(value.double(), exact.detach(), rtol=1e-5, atol=0, msg="float32 sure row: linear")
    torch.testing.assert_close(b.grad.double(), full.grad[lo:hi], rtol=1e-5, atol=1e-12, msg="sure row: grad bias")
    try:  # (c)
        vocab_parallel_cross_entropy(z64[:, lo:hi], y % (V - 1), vocab_start=lo, n_vocab=V - 1)
    except lk.LossInputError as error:
        assert f"n_vocab: expected the sum of the shards' widths over the group ({V})" in str(error), error
    else:
        raise AssertionError("an n_vocab unequal to the shards' widths must be refused")
    # (d) shards that do not tile the vocabulary (found in a later review: both ranks at vocab_start 0, or one past
    # the vocabulary, gave a wrong loss without a word), refused on every rank alike
    width = hi - lo
    for starts in ((0, 0), (0, 100)):
        for call in (lambda s: vocab_parallel_cross_entropy(z64[:, lo:hi], y, vocab_start=s),
                     lambda s: vocab_parallel_linear_cross_entropy(hidden, layer[lo:hi], y, vocab_start=s)):
            try:
                call(starts[rank])
            except lk.LossInputError as error:
                assert str(error).startswith(f"vocab_start: expected shards that tile the vocabulary 0..{V} without "
                                             f"gap or overlap"), error
                assert f"({starts[0]}, {BOUNDS[1] - BOUNDS[0]}), ({starts[1]}, {BOUNDS[2] - BOUNDS[1]})" in str(error)
            else:
                raise AssertionError(f"shards starting at {starts} (width {width} here) must be refused")


def _check_wide_rows(rank):
    """Rows of 10,000 classes split 3,000 and 7,000 (rank 1's kernels run parallel, rank 0's their serial
    twins) against F.cross_entropy in float64, for float64 and float32 logits; a NaN logit on one rank makes
    its row's loss and gradient NaN on both, the other rows untouched."""
    gen = torch.Generator().manual_seed(5)
    vocab, bounds = 10_000, (0, 3_000, 10_000)
    lo, hi = bounds[rank], bounds[rank + 1]
    for dtype, tol in ((torch.float64, {"rtol": 1e-12, "atol": 1e-15}), (torch.float32, {"rtol": 1e-5, "atol": 1e-9})):
        z = (torch.randn(64, vocab, generator=gen, dtype=torch.float64) * 4).to(dtype)
        y = torch.randint(0, vocab, (64,), generator=gen)
        full = z.double().clone().requires_grad_(True)  # (a copy: z.double() is z in float64)
        exact = F.cross_entropy(full, y, label_smoothing=0.1, reduction="none")
        exact.sum().backward()
        shard = z[:, lo:hi].clone().requires_grad_(True)
        value = vocab_parallel_cross_entropy(shard, y, vocab_start=lo, label_smoothing=0.1, reduction="none")
        value.sum().backward()
        name = f"wide rows, {dtype}"
        torch.testing.assert_close(value.double(), exact.detach(), **tol, msg=name)
        torch.testing.assert_close(shard.grad.double(), full.grad[:, lo:hi], **tol, msg=f"{name}: grad")
        poisoned = z[:, lo:hi].clone()
        if rank == 0:
            poisoned[5, 17] = float("nan")
        poisoned.requires_grad_(True)
        value = vocab_parallel_cross_entropy(poisoned, y, vocab_start=lo, reduction="none")
        value.sum().backward()
        assert bool(torch.isnan(value[5])) and bool(torch.isnan(poisoned.grad[5]).all()), f"{name}: NaN row"
        rest = torch.arange(64) != 5
        torch.testing.assert_close(value[rest].double(), F.cross_entropy(z.double(), y, reduction="none")[rest],
                                   **tol, msg=f"{name}: beside a NaN row")


def _check_second_order_refused(rank, z, y, h, shard_layer):
    lo, hi = BOUNDS[rank], BOUNDS[rank + 1]
    shard = z[:, lo:hi].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(vocab_parallel_cross_entropy(shard, y, vocab_start=lo, ignore_index=-100), shard,
                                  create_graph=True)
    try:
        grad.pow(2).sum().backward()
    except RuntimeError as error:
        assert "second derivatives of the vocab-parallel losses are not supported" in str(error), error
    else:
        raise AssertionError("a double backward through vocab_parallel_cross_entropy must raise")
    value = vocab_parallel_linear_cross_entropy(h, shard_layer, y, vocab_start=lo, ignore_index=-100)
    grads = torch.autograd.grad(value, (h, shard_layer), create_graph=True)
    try:
        sum(g.pow(2).sum() for g in grads).backward()
    except RuntimeError as error:
        assert "second derivatives" in str(error), error
    else:
        raise AssertionError("a double backward through vocab_parallel_linear_cross_entropy must raise")


def run(rank, port):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        # every case on both paths of a CPU rank: the compiled kernels (the default) and the torch-native chain
        # that other devices take (and a row of non-finite max on the CPU)
        for compiled in (True, False):
            losskit.torch.distributed.COMPILED = compiled
            _checks_of_a_rank(rank)
    finally:
        dist.destroy_process_group()


def _checks_of_a_rank(rank):
    group = dist.new_group([0, 1])  # an explicit process group, passed as group=
    z, y, cw, w = _cases()
    y_plain = torch.where(y == -100, torch.zeros_like(y), y)
    _check(rank, "plain", z, y_plain, {}, lambda f: F.cross_entropy(f, y_plain), group)
    _check(rank, "float32", z.float(), y_plain, {}, lambda f: F.cross_entropy(f, y_plain))
    _check(rank, "ignore+smoothing", z, y, {"ignore_index": -100, "label_smoothing": 0.1},
           lambda f: F.cross_entropy(f, y, ignore_index=-100, label_smoothing=0.1))
    _check(rank, "none", z, y_plain, {"reduction": "none"},
           lambda f: F.cross_entropy(f, y_plain, reduction="none"), group)
    _check(rank, "sum+class_weight", z, y, {"reduction": "sum", "class_weight": cw, "ignore_index": -100},
           lambda f: F.cross_entropy(f, y, weight=cw, reduction="sum", ignore_index=-100))
    # losskit semantics for class weights with smoothing: the core loss on the gathered logits
    _check(rank, "class_weight+weight+smoothing", z, y,
           {"class_weight": cw, "weight": w, "ignore_index": -100, "label_smoothing": 0.2},
           lambda f: lk.softmax_cross_entropy(f, y, class_weight=cw, weight=w, ignore_index=-100,
                                              label_smoothing=0.2))
    _check(rank, "z_loss", z, y_plain, {"z_loss": 1e-2},
           lambda f: (F.cross_entropy(f, y_plain, reduction="none")
                      + 1e-2 * torch.logsumexp(f, -1) ** 2).mean())
    # masked vocabulary entries (-inf logits, never a label): finite loss, zero gradient there
    masked = z.clone()
    masked[:, [c for c in range(V) if c not in set(y_plain.tolist())]] = float("-inf")
    _check(rank, "masked -inf", masked, y_plain, {}, lambda f: F.cross_entropy(f, y_plain))
    _check(rank, "masked -inf+smoothing", masked, y_plain, {"label_smoothing": 0.1, "reduction": "none"},
           lambda f: F.cross_entropy(f, y_plain, label_smoothing=0.1, reduction="none"))
    # +inf logits: the core loss's limits (one on each shard's rows, two in a row across the shards; labels
    # on them and off them), with and without smoothing
    top = z.clone()
    top[0, y_plain[0]] = top[1, (y_plain[1] + 1) % V] = float("inf")
    top[3, 1] = top[3, 8] = float("inf")
    top[4, 2] = top[4, 8] = float("inf")  # row 4's label is 8: log 2
    top[6] = float("-inf")  # every logit -inf: log V and the uniform softmax's gradient
    for name, options in (("+inf", {"reduction": "none"}), ("+inf+smoothing", {"label_smoothing": 0.1}),
                          ("+inf+weight", {"weight": w, "ignore_index": -100})):
        def reference(f, options=options):  # the torch module: the core's analytic gradient (the limit's)
            loss = losskit.torch.module(lk.SoftmaxCrossEntropy(**{k: v for k, v in options.items() if k != "weight"}))
            return loss(f, y if "ignore_index" in options else y_plain, weight=options.get("weight"))

        labels = y if "ignore_index" in options else y_plain
        _check(rank, name, top, labels, dict(options), reference)
    _check(rank, "normalizer", z, y_plain, {"normalizer": 4.0, "reduction": "mean"},
           lambda f: F.cross_entropy(f, y_plain, reduction="sum") / 4.0)
    h, shard_layer = _check_linear(rank, y, cw, w)
    _check_linear_half(rank)
    _check_review_findings(rank)
    _check_second_review(rank)
    _check_wide_rows(rank)
    _check_second_order_refused(rank, z, y, h, shard_layer)
    # an infinite upstream value on an ignored row (found in review: the kernel zeroed a row where scale * upstream
    # was 0, and 0 * inf is NaN): its gradient is 0, as F.cross_entropy's; the other rows as before
    lo, hi = BOUNDS[rank], BOUNDS[rank + 1]
    shard = z[:, lo:hi].clone().requires_grad_(True)
    upstream = torch.ones(N, dtype=z.dtype)
    upstream[2] = float("inf")  # y[2] is -100
    vocab_parallel_cross_entropy(shard, y, vocab_start=lo, ignore_index=-100, reduction="none").backward(upstream)
    full = z.clone().requires_grad_(True)
    F.cross_entropy(full, y, ignore_index=-100, reduction="none").backward(upstream)
    assert bool((shard.grad[2] == 0).all()), "an ignored row's gradient under an infinite upstream value"
    torch.testing.assert_close(shard.grad, full.grad[:, lo:hi], rtol=1e-12, atol=1e-12, msg="infinite upstream")
    everything = torch.full((N,), -100)
    shard = z[:, BOUNDS[rank]:BOUNDS[rank + 1]]
    zero = vocab_parallel_cross_entropy(shard, everything, vocab_start=BOUNDS[rank], ignore_index=-100)
    assert float(zero) == 0.0, "all-ignored mean must be 0"


if __name__ == "__main__":
    mp.spawn(run, args=(int(sys.argv[1]),), nprocs=WORLD, join=True)
    print("vocab-parallel: all cases match")
