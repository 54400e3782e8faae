"""Dask: the core losses stay chunk-wise on a 2-process LocalCluster over data larger than a worker's memory."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import losskit as lk  # noqa: E402
import losskit.dask as lkd  # noqa: E402

# 819 MB of float32 logits in 64 blocks of 13 MB, on workers of 600 MB: a worker that runs the
# compiled kernels holds numba and LLVM (170 MB resident, measured: a process at 32 MB after
# `import losskit` is at 202 MB after its first kernel call), so 300 MB workers were restarted
ROWS, CLASSES, CHUNK_ROWS = 3_200_000, 64, 50_000
WORKER_MEMORY = 600e6
TIMEOUT = 150  # seconds for one computation on the cluster


def _bounded(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` or a test failure after TIMEOUT s (the cluster fixture then shuts down)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=TIMEOUT)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"the computation on the LocalCluster exceeded {TIMEOUT} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _data():
    rng = da.random.default_rng(0)
    logits = rng.standard_normal((ROWS, CLASSES), dtype=np.float32, chunks=(CHUNK_ROWS, CLASSES)) * 3
    labels = rng.integers(0, CLASSES, size=ROWS, chunks=CHUNK_ROWS)
    weight = rng.uniform(0.5, 2.0, size=ROWS, chunks=CHUNK_ROWS).astype(np.float32)
    return logits, labels, weight


def _peak_rss() -> float | None:
    """This process's peak resident memory in bytes (run on each worker): VmHWM, which belongs to the
    address space; ru_maxrss would carry the peak of the pytest process that spawned the worker."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _max_dependencies(array) -> int:
    graph = array.__dask_graph__()
    deps = graph.get_all_dependencies() if hasattr(graph, "get_all_dependencies") else {}
    return max((len(v) for v in deps.values()), default=0)


@pytest.fixture(scope="module")
def client():
    # the context managers close the workers and the scheduler even when a test fails
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  memory_limit=WORKER_MEMORY, dashboard_address=None, timeout=60) as cluster, \
            distributed.Client(cluster, timeout="60s") as client:
        yield client


def test_graph_is_chunk_wise():
    logits, labels, weight = _data()
    assert logits.nbytes > WORKER_MEMORY
    total, weight_sum = lk.SoftmaxCrossEntropy(label_smoothing=0.1).sum_and_weight(logits, labels, weight=weight)
    n_chunks = logits.numblocks[0]
    # the tree reduction combines a few chunks per task; no task takes them all
    assert 0 < _max_dependencies(total) < n_chunks
    grad = lk.SoftmaxCrossEntropy().grad(logits, labels)
    assert isinstance(grad, da.Array) and grad.chunks[0] == logits.chunks[0]
    # and so is what losskit.dask.score computes: one task per block, then a tree of pairs
    parts = lkd.partial_sums(lk.SoftmaxCrossEntropy(label_smoothing=0.1), logits, labels, weight=weight)
    assert parts.shape == (2,) and 0 < _max_dependencies(parts) < n_chunks


def test_score_on_a_local_cluster_equals_numpy(client):
    logits, labels, weight = _data()
    loss = lk.SoftmaxCrossEntropy(label_smoothing=0.1)
    workers = set(client.scheduler_info()["workers"])
    with distributed.get_task_stream(client) as stream:
        mean, total, weight_sum = _bounded(lkd.score, loss, logits, labels, weight=weight)
    # both worker processes computed, and neither was restarted for exceeding its memory limit
    assert {task["worker"] for task in stream.data} == workers
    assert set(client.scheduler_info()["workers"]) == workers
    peaks = client.run(_peak_rss)
    if None not in peaks.values():  # Linux: the whole 410 MB never sat in one worker
        assert 0 < max(peaks.values()) < WORKER_MEMORY, peaks
    # reference: NumPy, one chunk at a time in this process, combined by hand
    ref_total = ref_weight = 0.0
    for block in range(logits.numblocks[0]):
        z = logits.blocks[block].compute(scheduler="sync").astype(np.float64)
        y = labels.blocks[block].compute(scheduler="sync")
        w = weight.blocks[block].compute(scheduler="sync").astype(np.float64)
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        per_example = -(0.9 * logp[np.arange(len(y)), y] + 0.1 / CLASSES * logp.sum(1))
        ref_total += float(np.sum(w * per_example))
        ref_weight += float(np.sum(w))
    np.testing.assert_allclose(weight_sum, ref_weight, rtol=1e-5)
    np.testing.assert_allclose(total, ref_total, rtol=1e-5)
    np.testing.assert_allclose(mean, ref_total / ref_weight, rtol=1e-5)
    # the lazy "mean" of the core agrees with the parts
    np.testing.assert_allclose(float(_bounded(loss(logits, labels, weight=weight).compute)), mean, rtol=1e-5)


def test_partial_scores_combine_exactly():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(100, 5)), rng.integers(0, 5, size=100)
    y[::7] = -1
    loss = lk.SoftmaxCrossEntropy(ignore_index=-1, class_weight=[1.0, 2.0, 0.5, 1.0, 3.0])
    parts = [lkd.score(loss, da.from_array(z[s]), da.from_array(y[s])) for s in (slice(0, 30), slice(30, 100))]
    combined = sum(p[1] for p in parts) / sum(p[2] for p in parts)
    np.testing.assert_allclose(combined, loss(z, y), rtol=1e-12)
    mean_of_means = np.mean([p[0] for p in parts])
    assert abs(mean_of_means - combined) > 1e-6  # why the parts are returned


def test_a_bad_label_in_one_block_raises_from_the_worker(client):
    z = da.from_array(np.zeros((40, 3)), chunks=(10, 3))
    y = np.zeros(40, dtype=np.int64)
    y[33] = 7  # in the fourth block only: the lazy core cannot see it, the block's task does
    with pytest.raises(lk.LossInputError, match="label 7"):
        _bounded(lkd.score, lk.SoftmaxCrossEntropy(), z, da.from_array(y, chunks=10))
    p = da.from_array(np.full((40,), 0.5), chunks=10)
    with pytest.raises(lk.LossInputError, match="target"):
        _bounded(lkd.score, lk.BinaryCrossEntropy(), p, da.from_array(np.where(np.arange(40) == 21, 2.0, 1.0),
                                                                      chunks=10))


@pytest.mark.parametrize("name", ["class_axis_1", "multilabel", "multilabel_pos_weight_per_label", "binary_1d",
                                  "mse", "probabilities"])
def test_blockwise_sums_equal_the_whole_array_for_every_layout(name):
    rng = np.random.default_rng(2)
    loss, predictions, target, weight = {
        "class_axis_1": (lk.SoftmaxCrossEntropy(axis=1, ignore_index=-1), rng.normal(size=(6, 4, 5)),
                         np.where(rng.uniform(size=(6, 5)) < 0.2, -1, rng.integers(0, 4, size=(6, 5))),
                         rng.uniform(size=(6, 5))),
        "multilabel": (lk.MultilabelCrossEntropy(pos_weight=2.0), rng.normal(size=(30, 3)),
                       (rng.uniform(size=(30, 3)) > 0.5).astype(float), rng.uniform(size=30)),
        # a pos_weight per label: the label axis chunked too raised (each block checked against its slice)
        "multilabel_pos_weight_per_label": (
            lk.BinaryCrossEntropyWithLogits(pos_weight=[1.0, 2.0, 3.0, 4.0, 0.5, 1.5]), rng.normal(size=(30, 6)),
            (rng.uniform(size=(30, 6)) > 0.5).astype(float), rng.uniform(size=(30, 6))),
        "binary_1d": (lk.BinaryCrossEntropyWithLogits(), rng.normal(size=40), (rng.uniform(size=40) > 0.5) * 1.0,
                      None),
        "mse": (lk.MeanSquaredError(), rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), rng.uniform(size=40)),
        "probabilities": (lk.CategoricalCrossEntropy(label_smoothing=0.1), rng.dirichlet(np.ones(3), size=20),
                          rng.dirichlet(np.ones(3), size=20), None),
    }[name]
    # chunks along every axis, the class axis too: partial_sums rechunks what one example spans
    chunked = da.from_array(predictions, chunks=tuple(max(1, n // 3) for n in predictions.shape))
    parts = lkd.partial_sums(loss, chunked, target, weight=None if weight is None else da.from_array(weight, chunks=7))
    total, weight_sum = parts.compute(scheduler="sync")
    expected_total, expected_weight = loss.sum_and_weight(predictions, target, weight=weight)  # NumPy, whole
    np.testing.assert_allclose([total, weight_sum], [expected_total, expected_weight], rtol=1e-12)


@pytest.mark.parametrize(("name", "target"), [
    ("softmax_cross_entropy", "labels"), ("poly_cross_entropy", "labels"), ("softmax_focal_loss", "labels"),
    ("multiclass_hinge_loss", "labels"), ("kl_divergence", "probs"), ("categorical_cross_entropy", "probs"),
    ("distillation_loss", "logits"), ("js_divergence", "logits")])
def test_an_empty_batch_of_a_class_axis_loss_gives_zero_on_dask(name, target):
    """Dask's row max over an empty batch raised "zero-size array to reduction operation maximum" when
    computed; an empty batch is 0 (an empty array for "none"), its gradient empty, as on NumPy."""
    z = np.zeros((0, 3))
    t = {"labels": np.zeros(0, dtype=np.int64), "probs": np.zeros((0, 3)), "logits": np.zeros((0, 3))}[target]
    for reduction in ("mean", "sum", "none"):
        loss = lk.REGISTRY[name][0](reduction=reduction)
        value, grad = loss.value_and_grad(da.from_array(z), da.from_array(t))
        value, grad = value.compute(), grad.compute()
        assert value.shape == ((0,) if reduction == "none" else ()) and np.sum(value) == 0.0
        assert grad.shape == (0, 3)


def test_one_example_of_label_0_with_class_weights_on_dask():
    """Dask's take of the one index 0 reports the table's shape (3,), so the class weights' reshape
    raised "total size of new array must be unchanged"."""
    x, t, cw = np.array([[1.0, 2.0, 0.5]]), np.array([0]), [5.0, 2.0, 3.0]
    expected = 5.0 * (np.log(np.exp(x).sum()) - x[0, 0])  # "sum": the gathered weight shows
    got = lk.softmax_cross_entropy(da.from_array(x), da.from_array(t), class_weight=cw, reduction="sum").compute()
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    x2, t2 = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), np.array([0, 2])
    np.testing.assert_allclose(lk.softmax_cross_entropy(da.from_array(x2), da.from_array(t2), class_weight=cw,
                                                        reduction="none").compute(),
                               [5.0, 3.0] * (np.log(np.exp(x2).sum(1)) - x2[[0, 1], t2]), rtol=1e-14)


def test_half_precision_totals_stay_in_float32():
    """float16 logits: a block's total (97,374) and count (70,000) passed 65504 and came back inf, so
    score gave NaN. The totals are float32 sums, as the core's mean of the same rows."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(70_000, 3)).astype(np.float16), rng.integers(0, 3, 70_000)
    loss = lk.SoftmaxCrossEntropy()
    total, count = loss.sum_and_weight(z, y)
    assert total.dtype == count.dtype == np.float32 and float(count) == 70_000
    mean, _, weight_sum = lkd.score(loss, da.from_array(z, chunks=(70_000, 3)), y)
    assert weight_sum == 70_000
    np.testing.assert_allclose(mean, loss(z.astype(np.float32), y), rtol=1e-6)


def test_doctests():
    import doctest

    assert doctest.testmod(lkd, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_a_bad_label_in_a_lazy_core_call_gives_nan():
    """The core on Dask arrays cannot read the labels before compute: a label outside the classes gave the
    loss of another class (or none); its example now weighs NaN, so the computed loss is NaN."""
    z = da.from_array(np.random.default_rng(0).normal(size=(6, 5)), chunks=(2, 5))
    y = np.array([0, 4, 1, 2, 3, 0])
    loss = lk.SoftmaxCrossEntropy()
    np.testing.assert_allclose(float(loss(z, da.from_array(y, chunks=2)).compute()), float(loss(z.compute(), y)),
                               rtol=1e-12)
    for bad in (5, -1):
        wrong = y.copy()
        wrong[3] = bad
        assert np.isnan(float(loss(z, da.from_array(wrong, chunks=2)).compute())), bad


def test_arrays_of_unknown_size_are_named_with_the_fix():
    """After a boolean filter a Dask array's sizes are NaN, which compare unequal: the shape checks read
    "expected shape (nan, 4) ..., got shape (nan, 4)". Now the argument is named, and the fix given."""
    x = da.from_array(np.random.default_rng(0).normal(size=(10, 4)), chunks=(5, 4))
    keep = x[:, 0] > -np.inf
    z, y = x[keep], da.zeros(10, dtype=int, chunks=5)[keep]
    # each call names its own argument: losskit.dask's is `predictions` whatever the loss (it said `logits`)
    for call, name in ((lambda: lk.mean_squared_error(z, z * 0.5), "predictions"),
                       (lambda: lk.softmax_cross_entropy(z, y), "logits"),
                       (lambda: lkd.score(lk.SoftmaxCrossEntropy(), z, y), "predictions"),
                       (lambda: lkd.partial_sums(lk.SoftmaxCrossEntropy(), z, y), "predictions")):
        with pytest.raises(lk.LossInputError, match=rf"^{name}: .*compute_chunk_sizes"):
            call()
    z.compute_chunk_sizes()
    y.compute_chunk_sizes()
    assert float(lk.softmax_cross_entropy(z, y).compute()) == pytest.approx(
        float(lk.softmax_cross_entropy(x.compute(), np.zeros(10, dtype=int))), rel=1e-12)


def test_score_refuses_what_is_no_loss_object_and_out_names_both_types():
    """``losskit.dask.score`` of a loss class, a name or a function form failed inside with a TypeError or an
    AttributeError; a NumPy ``out=`` beside Dask logits was refused as 'an array of logits's type ... got
    ndarray' with the same shape and dtype on both sides: now the two libraries are named."""
    logits = da.from_array(np.zeros((6, 4)), chunks=3)
    labels = np.array([0, 1, 2, 3, 0, 1])
    for bad in (lk.SoftmaxCrossEntropy, "softmax_cross_entropy", lk.softmax_cross_entropy):
        with pytest.raises(lk.LossInputError, match="^loss: expected a (loss object|losskit Loss object)"):
            lkd.score(bad, logits, labels)
    with pytest.raises(lk.LossInputError, match="^out: expected an array of logits's type \\(dask.Array\\).*got "
                                                "numpy.ndarray"):
        lk.SoftmaxCrossEntropy().value_and_grad(logits, labels, out=np.zeros((6, 4)))


def test_a_lazy_mean_whose_sum_overflows_where_the_mean_does_not():
    """Ten float32 squared errors of 1e38: their sum overflows, their mean does not. NumPy's mean reads the
    values and sums the scaled losses instead; the lazy Dask mean had no such guard (inf). Both forms are
    now in the graph, the guard read when it is computed."""
    errors = np.full(10, 1e19, np.float32)
    expected = float(lk.mean_squared_error(errors, np.zeros(10, np.float32)))
    assert expected == pytest.approx(1e38, rel=1e-6)
    value = lk.mean_squared_error(da.from_array(errors, chunks=5), da.zeros(10, dtype=np.float32, chunks=5))
    assert float(value.compute()) == pytest.approx(expected, rel=1e-6)


def test_no_block_scored_is_larger_than_the_largest_given(monkeypatch):
    """The class axis is merged into one chunk; the rows' chunks now shrink so that a task's block holds no more
    than the largest block given (merging the axis alone made 1.6 MB blocks 51.2 MB: 32 class chunks)."""
    import dask

    seen = []
    scored = lkd._block_parts

    def recording(predictions, *rest, **options):
        seen.append(predictions.nbytes)
        return scored(predictions, *rest, **options)

    monkeypatch.setattr(lkd, "_block_parts", recording)
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(800, 640)).astype(np.float32), rng.integers(0, 640, 800)
    logits = da.from_array(z, chunks=(200, 20))
    # in this process (the record), with task rechunking (a distributed client of another test chooses P2P's)
    with dask.config.set({"scheduler": "sync", "array.rechunk.method": "tasks"}):
        mean, _, _ = lkd.score(lk.SoftmaxCrossEntropy(), logits, da.from_array(y, chunks=200))
    assert max(seen) <= 200 * 20 * 4 and sum(seen) == z.nbytes
    np.testing.assert_allclose(mean, float(lk.SoftmaxCrossEntropy()(z.astype(np.float64), y)), rtol=1e-6)


def test_score_takes_any_array_numpy_reads_and_a_dask_class_weight():
    """score's "Dask (or any) arrays": a torch tensor raised NumPy's "Cannot interpret 'torch.float32' as a data
    type"; one NumPy cannot read is named. A loss built with a Dask class_weight was refused in the worker as an
    array of another library than the block's."""
    torch = pytest.importorskip("torch")
    z, y = np.random.default_rng(1).normal(size=(6, 3)), np.array([0, 1, 2, 0, 1, 2])
    expected = float(lk.SoftmaxCrossEntropy()(z, y))
    assert lkd.score(lk.SoftmaxCrossEntropy(), torch.from_numpy(z), torch.from_numpy(y))[0] == pytest.approx(expected)
    with pytest.raises(lk.LossInputError, match="^predictions: expected a Dask array, or an array NumPy can read"):
        lkd.score(lk.SoftmaxCrossEntropy(), torch.from_numpy(z).requires_grad_(True), y)
    cw = np.array([0.5, 1.0, 2.0])
    weighted = lkd.score(lk.SoftmaxCrossEntropy(class_weight=da.from_array(cw)), da.from_array(z, chunks=2), y)
    assert weighted[0] == pytest.approx(float(lk.SoftmaxCrossEntropy(class_weight=cw)(z, y)), rel=1e-12)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "kl_divergence", "softmax_focal_loss",
                                  "multiclass_hinge_loss"])
def test_a_block_of_no_rows_is_scored_as_none(name):
    """A block filtered out entirely (then its size learnt, as the unknown-size error says): Dask's max of an
    empty block is of shape (1, 0), and every loss over a class axis met NumPy's raw "zero-size array to
    reduction operation maximum" (found in review). Value and gradient are the NumPy array's."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 3))
    labels = np.array([0, 1, 2, 2, 1, 0])
    target = np.eye(3)[labels] * 0.8 + 0.2 / 3 if name == "kl_divergence" else labels
    blocks = ((2, 0, 4), (3,))
    zd = da.from_array(z, chunks=blocks)
    td = da.from_array(target, chunks=blocks if target.ndim == 2 else (blocks[0],))
    loss = lk.REGISTRY[name][0]()
    value, grad = loss.value_and_grad(zd, td)
    expected_value, expected_grad = loss.value_and_grad(z, target)
    assert float(value.compute()) == pytest.approx(float(expected_value), rel=1e-12)
    np.testing.assert_allclose(grad.compute(), expected_grad, rtol=1e-12, atol=1e-15)


def test_a_probability_losss_input_is_named_predictions():
    """losskit.dask's argument is `predictions` whatever the loss: a probability loss's error said `probs`."""
    with pytest.raises(lk.LossInputError, match=r"^predictions: expected values in \[0, 1\]"):
        lkd.score(lk.BinaryCrossEntropy(), da.from_array(np.array([0.5, 1.5])), np.ones(2))
