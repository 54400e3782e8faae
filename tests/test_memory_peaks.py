"""Memory claims, as peak-memory bounds a regression would break (never timings):

* README / docs/fused.md: softmax CE forward+gradient takes "1.0x the logits in extra memory" (the
  gradient itself), and ``out=`` "allocates nothing of the input's size";
* README / docs/fused.md: ``linear_cross_entropy`` "never forms the N x V logits": one chunk's
  logits at a time, ``CHUNK_ELEMENTS`` of them by default;
* README: ``losskit.torch.SoftmaxCrossEntropy`` forward+backward on CPU tensors, "1.0x logits: the
  gradient itself" (``F.cross_entropy``: 3.0x).

NumPy: tracemalloc (NumPy reports its data buffers to it). torch CPU tensors: torch's CPU allocator
keeps no statistics, so a fresh process measures its peak resident memory (``VmHWM``, reset through
``/proc/self/clear_refs`` once the logits exist), as benchmarks/torch_memory.py does; the same
harness run on ``F.cross_entropy`` must see its 3x, so the measurement can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import losskit as lk
from losskit.losses import linear

N, V, D = 1024, 8000, 64
RNG = np.random.default_rng(0)


def _peak(fn):
    """(result, peak bytes allocated during ``fn()`` above what was allocated before)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def logits():
    z = RNG.normal(size=(N, V)).astype(np.float32)
    labels = RNG.integers(0, V, size=N)
    lk.SoftmaxCrossEntropy().value_and_grad(z[:4], labels[:4])  # compile / load the kernels first
    return z, labels


@pytest.mark.parametrize(("cls", "target"), [
    (lk.SoftmaxCrossEntropy, lambda z: RNG.integers(0, V, size=N)),
    (lk.BinaryCrossEntropyWithLogits, lambda z: (RNG.uniform(size=z.shape) > 0.5).astype(np.float32)),
    (lk.MeanSquaredError, lambda z: RNG.normal(size=z.shape).astype(np.float32)),
], ids=["softmax_ce", "bce_logits", "mse"])
def test_value_and_grad_takes_one_logits_of_extra_memory_and_none_with_out(logits, cls, target):
    z = logits[0]
    t = target(z)
    cls().value_and_grad(z, t)  # compiles (or loads) the parallel kernel: numba's own allocations are not the call's
    (value, grad), peak = _peak(lambda: cls().value_and_grad(z, t))
    assert grad.shape == z.shape and np.isfinite(value)
    assert peak <= 1.05 * z.nbytes, f"{peak / z.nbytes:.2f}x the logits"
    out = np.empty_like(z)
    (_, grad_out), peak = _peak(lambda: cls().value_and_grad(z, t, out=out))
    assert grad_out is out
    np.testing.assert_allclose(out, grad, rtol=1e-6, atol=1e-12)
    assert peak <= 0.01 * z.nbytes, f"out= allocated {peak / z.nbytes:.3f}x the logits"


def test_the_array_api_path_is_what_the_kernel_saves(logits):
    """The reference path makes several logits-sized temporaries: the harness sees them."""
    z, labels = logits
    _, peak = _peak(lambda: lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(z, labels))
    assert peak >= 2 * z.nbytes


@pytest.mark.parametrize("chunk_size", [64, None])
def test_linear_cross_entropy_holds_one_chunk_of_logits(logits, chunk_size, monkeypatch):
    _, labels = logits
    hidden = RNG.normal(size=(N, D)).astype(np.float32)
    classifier = (RNG.normal(size=(V, D)) * 0.1).astype(np.float32)
    if chunk_size is None:  # the default rule, at a budget this test can afford: 64 rows of V
        monkeypatch.setattr(linear, "CHUNK_ELEMENTS", 64 * V)
    rows = 64
    (value, grads), peak = _peak(lambda: linear.linear_cross_entropy_value_and_grad(
        hidden, classifier, labels, chunk_size=chunk_size))
    gradients = hidden.nbytes + classifier.nbytes  # d hidden and d classifier are returned
    chunk = rows * V * 4
    block = min(linear.ACCUMULATE_BLOCK, classifier.size) * 4  # d classifier's product, a block at a time
    assert peak <= 1.1 * (chunk + gradients) + block, f"{peak / (N * V * 4):.2f}x the N x V logits"
    assert peak <= 0.25 * N * V * 4
    dense_value, dense_grad = lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(
        hidden.astype(np.float64) @ classifier.T.astype(np.float64), labels)
    np.testing.assert_allclose(value, dense_value, rtol=1e-5)
    np.testing.assert_allclose(grads[0], dense_grad @ classifier.astype(np.float64), rtol=1e-3, atol=1e-6)


def test_accumulate_at_b_on_numpy_adds_in_place_block_by_block():
    """The classifier's gradient ``acc += a @ b`` never holds a second [V, D] array: at most one
    block of the product (``ACCUMULATE_BLOCK`` numbers), and the sum is the float64 one."""
    rng = np.random.default_rng(3)
    rows, inner, width = 5000, 7, 1024  # 2048 rows a block: two full blocks and a partial one
    acc = rng.normal(size=(rows, width))
    a = rng.normal(size=(inner, rows)).T  # a transposed chunk, as the sweeps pass it
    b = rng.normal(size=(inner, width))
    expected = acc + a @ b
    result, peak = _peak(lambda: linear.accumulate_at_b(np, acc, a, b))
    assert result is acc
    np.testing.assert_allclose(acc, expected, rtol=1e-13, atol=1e-12)
    assert peak <= 1.1 * linear.ACCUMULATE_BLOCK * 8, f"{peak / acc.nbytes:.2f}x the accumulator"


def test_a_preference_sweep_holds_one_pairs_kept_logits(monkeypatch):
    """docs/post-training.md: a DPO chunk holds one pair's logits, of its kept tokens only (the prompt
    never reaches the gemm), beside the gradients it returns."""
    from losskit.losses import logprobs

    pairs, tokens, prompt, features, vocab = 4, 64, 48, 32, 8000
    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", 2 * tokens * vocab // 4)  # a pair is within 4x the budget
    rng = np.random.default_rng(4)
    hidden = rng.normal(size=(2 * pairs, tokens, features)).astype(np.float32)
    classifier = (rng.normal(size=(vocab, features)) * 0.1).astype(np.float32)
    target = rng.integers(0, vocab, size=(2 * pairs, tokens))
    target[:, :prompt] = -100
    ref = rng.normal(size=2 * pairs).astype(np.float32)
    call = lambda: lk.linear_preference_loss_value_and_grad(hidden, classifier, target, ref_logps=ref)  # noqa: E731
    call()
    (value, grads), peak = _peak(call)
    kept_pair = 2 * (tokens - prompt) * vocab * 4
    gradients = hidden.nbytes + classifier.nbytes
    block = min(linear.ACCUMULATE_BLOCK, classifier.size) * 4  # d classifier's product, a block at a time
    assert np.isfinite(float(value)) and grads[1].shape == classifier.shape
    assert peak <= 1.1 * (kept_pair + gradients) + block, f"{(peak - gradients) / kept_pair:.2f}x a pair's kept logits"


#: the children's peak-memory helpers: VmHWM, and its reset through /proc/self/clear_refs
_PEAK = r"""
def hwm():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
"""


_CHILD = r"""
import json, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "losskit":
    import losskit.torch as lt
    fn = lt.SoftmaxCrossEntropy()
else:
    fn = torch.nn.functional.cross_entropy
fn(torch.randn(8, 16, requires_grad=True), torch.zeros(8, dtype=torch.long)).backward()  # warm up
if sys.argv[1] == "losskit":  # a small first call compiles its kernel in the background: not measured here
    from losskit.losses import _compiled
    _compiled.wait_for_compiles()
logits = torch.randn(int(sys.argv[2]), int(sys.argv[3]), requires_grad=True)
labels = torch.randint(0, logits.shape[1], (logits.shape[0],))

reset_peak()
base = hwm()
fn(logits, labels).backward()
print(json.dumps({"extra": hwm() - base, "logits": logits.numel() * logits.element_size()}))
"""


def _torch_extra(which):
    out = subprocess.run([sys.executable, "-c", _PEAK + _CHILD, which, "1024", "16000"], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["extra"] / result["logits"]


def test_torch_softmax_ce_on_cpu_takes_one_logits_of_extra_memory():
    pytest.importorskip("torch")
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak resident memory needs Linux /proc/self/clear_refs")
    ours = _torch_extra("losskit")
    assert ours <= 1.25, f"losskit.torch.SoftmaxCrossEntropy: {ours:.2f}x the logits"
    theirs = _torch_extra("torch")
    assert theirs >= 2.0, f"the harness should see F.cross_entropy's 3x, saw {theirs:.2f}x"


def test_torch_cpu_tensors_reach_the_kernels_without_a_copy(logits):
    """docs/frameworks.md: "zero-copy DLPack views of the tensors' memory": with ``out=`` nothing of
    the input's size is allocated through NumPy (a copy of the logits or of the gradient would be)."""
    torch = pytest.importorskip("torch")
    z, labels = (torch.from_numpy(a) for a in logits)
    out = torch.empty_like(z)
    loss = lk.SoftmaxCrossEntropy()
    # the same call first: its parallel kernel loaded (a small call runs the serial one), which allocates
    # through Python (the test failed run alone, where no other test had loaded it)
    loss.value_and_grad(z, labels, out=out)
    (value, grad), peak = _peak(lambda: loss.value_and_grad(z, labels, out=out))
    assert grad is out and torch.isfinite(value)
    assert peak <= 0.01 * z.numel() * z.element_size(), f"{peak / (z.numel() * z.element_size()):.2f}x the logits"


_PREFERENCE_CHILD = r"""
import json, sys
import numpy as np, torch
import losskit.torch as lt
torch.set_num_threads(1)
rng = np.random.default_rng(0)
def tensors(pairs, tokens, features, vocab):
    h = torch.from_numpy(rng.normal(size=(2 * pairs, tokens, features)).astype(np.float32)).requires_grad_(True)
    c = torch.from_numpy((rng.normal(size=(vocab, features)) * 0.1).astype(np.float32)).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, vocab, size=(2 * pairs, tokens)))
    return h, c, y, torch.from_numpy(rng.normal(size=2 * pairs).astype(np.float32))
if sys.argv[1] == "preference":
    loss_fn = lt.LinearPreferenceLoss("dpo")
else:  # the linear cross-entropy's autograd Function, on the same tokens
    def loss_fn(h, c, y, ref):
        return lt.linear_cross_entropy(h.reshape(-1, h.shape[-1]), c, y.reshape(-1))
loss_fn(*tensors(1, 4, 8, 16)).backward()  # imports and kernels, not measured
h, c, y, ref = tensors(2, 16, 512, 64000)

reset_peak()
base = hwm()
loss_fn(h, c, y, ref).backward()
print(json.dumps({"extra": hwm() - base, "classifier": c.numel() * 4, "pair_logits": 2 * 16 * 64000 * 4}))
"""


@pytest.mark.parametrize("which", ["preference", "linear_ce"])
def test_torch_preference_backward_scales_the_saved_gradients_in_place(which):
    """docs/post-training.md: ``losskit.torch.LinearPreferenceLoss``'s backward scales the gradients
    its forward computed in place, and autograd hands it no zero tensors for the op's unused gradient
    outputs, so the classifier's gradient exists once (before: three [V, D] arrays at the peak). A
    second backward through the same graph is refused, saying why (it was torch's error for a saved tensor
    modified in place, which blamed the user)."""
    torch = pytest.importorskip("torch")
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak resident memory needs Linux /proc/self/clear_refs")
    out = subprocess.run([sys.executable, "-c", _PEAK + _PREFERENCE_CHILD, which], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    budget = result["classifier"] + result["pair_logits"] + 4 * min(linear.ACCUMULATE_BLOCK, result["classifier"] // 4)
    assert result["extra"] <= 1.3 * budget, f"{result['extra'] / result['classifier']:.2f}x the classifier"
    import losskit.torch as lt

    h = torch.ones((2, 3, 4), requires_grad=True)
    loss = lt.LinearPreferenceLoss("dpo")(h, torch.ones((5, 4)), torch.zeros((2, 3), dtype=torch.long),
                                          torch.zeros(2))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward runs once per forward"):
        loss.backward()
