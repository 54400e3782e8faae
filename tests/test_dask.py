"""Dask: the core losses stay chunk-wise on a 2-process LocalCluster over data larger than a worker's memory."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import losskit as lk  # noqa: E402
import losskit.dask as lkd  # noqa: E402

ROWS, CLASSES, CHUNK_ROWS = 1_600_000, 64, 100_000  # 410 MB of float32 logits in 16 chunks of 26 MB
WORKER_MEMORY = 300e6


def _data():
    rng = da.random.default_rng(0)
    logits = rng.standard_normal((ROWS, CLASSES), dtype=np.float32, chunks=(CHUNK_ROWS, CLASSES)) * 3
    labels = rng.integers(0, CLASSES, size=ROWS, chunks=CHUNK_ROWS)
    weight = rng.uniform(0.5, 2.0, size=ROWS, chunks=CHUNK_ROWS).astype(np.float32)
    return logits, labels, weight


def _max_dependencies(array) -> int:
    graph = array.__dask_graph__()
    deps = graph.get_all_dependencies() if hasattr(graph, "get_all_dependencies") else {}
    return max((len(v) for v in deps.values()), default=0)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  memory_limit=WORKER_MEMORY, dashboard_address=None) as cluster, \
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


def test_score_on_a_local_cluster_equals_numpy(client):
    logits, labels, weight = _data()
    loss = lk.SoftmaxCrossEntropy(label_smoothing=0.1)
    mean, total, weight_sum = lkd.score(loss, logits, labels, weight=weight)
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
    np.testing.assert_allclose(float(loss(logits, labels, weight=weight).compute()), mean, rtol=1e-5)


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
