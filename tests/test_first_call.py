"""A first call on a small input does not wait for numba: the reference answers while the kernel
compiles in a background thread; later calls take the kernel once it is ready. Small calls run the
kernel on the calling thread alone (no parallel region to fight BLAS's threads in a training loop)."""

from __future__ import annotations

import time

import numpy as np

import losskit as lk
from losskit.losses import _compiled


def _fresh_loss():
    class FirstCallSquare(lk.ElementwiseLoss):  # a class of its own: no kernel compiled for it yet
        def value(self, xp, z, y):
            return (z - y) * (z - y)

        def derivative(self, xp, z, y):
            return 2 * (z - y)

    return FirstCallSquare()


def _states(cls):
    return [state for key, state in _compiled._STATE.items() if key[0] is cls]


def test_small_first_call_answers_from_the_reference_while_compiling(monkeypatch):
    monkeypatch.setattr(_compiled, "ANSWER_WHILE_COMPILING", 100_000)  # the default (conftest turns it off)
    loss = _fresh_loss()
    z, y = np.linspace(-2, 2, 50), np.zeros(50)
    value, grad = loss.value_and_grad(z, y)
    np.testing.assert_allclose(float(value), np.mean(z * z), rtol=1e-14)
    np.testing.assert_allclose(grad, 2 * z / 50, rtol=1e-14)
    assert _states(type(loss)), "a background compile was started"
    deadline = time.monotonic() + 300
    while _states(type(loss)) != [_compiled._READY] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _states(type(loss)) == [_compiled._READY]
    value2, grad2 = loss.value_and_grad(z, y)  # now the kernel
    np.testing.assert_allclose(float(value2), np.mean(z * z), rtol=1e-14)
    np.testing.assert_allclose(grad2, 2 * z / 50, rtol=1e-14)


def test_fused_never_falls_back_while_compiling():
    loss = _fresh_loss().replace(impl="fused")
    z = np.linspace(-1, 1, 10)
    np.testing.assert_allclose(float(loss(z, np.zeros(10))), np.mean(z * z), rtol=1e-14)
    assert _states(type(loss)) == [_compiled._READY]


def test_small_calls_run_serial_and_restore_the_thread_count(monkeypatch):
    import numba

    before = numba.get_num_threads()
    seen = []
    original = lk.SoftmaxCrossEntropy.__dict__["_kernel"].__func__

    def spy(plan, arrays, with_grad):
        seen.append(numba.get_num_threads())
        return original(plan, arrays, with_grad)

    spy.__name__ = original.__name__
    monkeypatch.setattr(lk.SoftmaxCrossEntropy, "_kernel", staticmethod(spy))  # restored as it was
    lk.SoftmaxCrossEntropy(impl="fused").value_and_grad(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    assert seen == [1]
    assert numba.get_num_threads() == before
