"""A first call on a small input does not wait for numba: the reference answers while the kernel
compiles in a background thread; later calls take the kernel once it is ready. Small calls run
the kernel's serial twin on the calling thread (no parallel region to fight BLAS's threads in a training
loop)."""

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


def _python(script, cache=None, timeout=300):
    """``script`` run by a new interpreter (numba's disk cache in ``cache`` when given), once it has exited 0
    (its ``stdout`` and ``stderr``)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)} if cache is not None else None
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run


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


def test_small_calls_run_the_serial_twin_and_large_calls_the_parallel_kernel(monkeypatch):
    import numba

    from losskit import fused

    calls = []
    real = fused.pick

    def spy(kernel):
        chosen = real(kernel)
        calls.append(chosen.targetoptions["parallel"])
        return chosen

    monkeypatch.setattr(fused, "pick", spy)
    monkeypatch.setattr(_compiled, "SERIAL_BELOW", 100)
    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    for rows in (4, 50):  # 12 elements: serial; 150: parallel
        z, y = rng.normal(size=(rows, 3)), rng.integers(0, 3, rows)
        value, grad = lk.SoftmaxCrossEntropy(impl="fused").value_and_grad(z, y)
        ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(z, y)
        np.testing.assert_allclose(value, ref_value, rtol=1e-14)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-13, atol=1e-17)
    assert calls == [False, True]
    assert numba.get_num_threads() == threads  # the thread count is never touched
    assert not fused.running_serial()  # the flag is restored after the call


def test_the_serial_twin_is_the_same_arithmetic_with_its_own_cache_entry():
    from losskit import fused
    from losskit.fused import kernels

    twin = fused.serial_twin(kernels.bce_logits_rows)
    assert twin is fused.serial_twin(kernels.bce_logits_rows)  # made once
    assert twin.targetoptions["parallel"] is False and kernels.bce_logits_rows.targetoptions["parallel"] is True
    assert twin.py_func.__qualname__ != kernels.bce_logits_rows.py_func.__qualname__  # not the parallel entry
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(64, 40)), rng.uniform(size=(64, 40))
    outputs = []
    for kernel in (twin, kernels.bce_logits_rows):
        loss, grad, flags = np.empty(64), np.empty_like(z), np.zeros(64, np.uint8)
        kernel(z, y, np.ones(40), np.full((1, 1), 0.5), 0.0, loss, np.empty((0, 0)), grad, True, flags)
        outputs.append((loss, grad))
    # the same formula per element; a row's sum may be vectorised in another order (reassociation)
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], rtol=4 * np.finfo(np.float64).eps, atol=0)
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


def _frozen(array):
    array = np.array(array)
    array.flags.writeable = False
    return array


def test_read_only_and_writable_arrays_share_one_compiled_variant():
    """numba types a read-only array apart: without care, a caller's frozen array (a memory map, a
    broadcast view) would compile every kernel a second time, seconds each."""
    from losskit import fused
    from losskit.fused import kernels

    rng = np.random.default_rng(0)
    z, labels, weight = rng.normal(size=(6, 5)), rng.integers(0, 5, 6), rng.uniform(0.5, 2, 6)
    softmax = lk.SoftmaxCrossEntropy(impl="fused")
    twin = fused.serial_twin(kernels.softmax_ce_short_rows)  # 5 classes: the short-row kernel
    expected = softmax.value_and_grad(z, labels, weight=weight)
    compiled = len(twin.signatures)
    for args in ((_frozen(z), _frozen(labels), _frozen(weight)), (z, labels, np.broadcast_to(weight, (6,)))):
        value, grad = softmax.value_and_grad(*args[:2], weight=args[2])
        assert float(value) == float(expected[0]) and np.array_equal(grad, expected[1])
    assert len(twin.signatures) == compiled

    huber = lk.HuberLoss(impl="fused")  # a formula kernel: one variant serves every small call
    huber.value_and_grad(z, z[::-1].copy())
    key_count = len(_compiled._STATE)
    from losskit.fused import formula

    kernel = formula.row_kernel(lk.HuberLoss, formula.options_tuple(huber), False, True, True, True,
                                huber.target_domain())
    compiled = len(kernel.signatures)
    huber.value_and_grad(_frozen(z), _frozen(z[::-1]), weight=_frozen(weight))
    assert len(kernel.signatures) == compiled and len(_compiled._STATE) >= key_count


def test_a_call_answered_while_its_kernel_compiles_hands_the_gil_to_the_compiling_thread(monkeypatch):
    """A loop of small calls holds the GIL; the compiling thread needs it back after each of its many
    short releases. Each call the reference answers while the kernel compiles sleeps 0 s once (the
    first starts the compile and does not); the answers are the reference's."""
    import threading

    monkeypatch.setattr(_compiled, "ANSWER_WHILE_COMPILING", 100_000)
    started = []

    def compile_never_finishing(key, loss, plan, arrays, with_grad):  # the state stays "compiling"
        started.append(key)
        _compiled._STATE[key] = _compiled._COMPILING

    monkeypatch.setattr(_compiled, "_compile_in_background", compile_never_finishing)
    sleeps = []
    real_sleep = time.sleep

    def spy(seconds):
        if threading.current_thread() is threading.main_thread():
            sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", spy)
    loss = _fresh_loss()
    z, y = np.linspace(-2, 2, 50), np.zeros(50)
    for call in range(3):
        value, grad = loss.value_and_grad(z, y)
        np.testing.assert_allclose(float(value), np.mean(z * z), rtol=1e-14)
        np.testing.assert_allclose(grad, 2 * z / 50, rtol=1e-14)
        assert sleeps == [0] * call
    assert len(started) == 1 and _states(type(loss)) == [_compiled._COMPILING]


def test_a_program_ending_while_a_kernel_compiles_anew_waits_for_it_and_the_next_run_loads_it(tmp_path):
    """A script that ends while numba compiles a kernel anew in the background waits for it at exit, so the
    kernel is written to numba's disk cache; a second run loads it from there, and a load is not marked as
    a compile anew (an exit does not wait for it)."""
    script = (
        "import time, numpy as np, losskit as lk\n"
        "from losskit.losses import _compiled\n"
        "z = np.linspace(-1, 1, 40)\n"
        "lk.HuberLoss(delta=0.5).value_and_grad(z, np.zeros(40))\n"
        "deadline = time.monotonic() + 120\n"
        "while not _compiled._COMPILING_ANEW and time.monotonic() < deadline:  # numba has begun compiling\n"
        "    time.sleep(0.01)\n"
        "print(list(_compiled._STATE.values())[0], len(_compiled._COMPILING_ANEW))\n"
    )
    first = _python(script, tmp_path).stdout
    assert first.split() == [_compiled._COMPILING, "1"]  # the script ended before its kernel was ready
    # the formula's kernel (an ElementwiseLoss's, fused/formula.py) written to the cache
    assert sorted(path.suffix for path in tmp_path.rglob("formula.row_kernel.*")) == [".nbc", ".nbi"]
    written = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    loads = script.replace("deadline = ", "_compiled.wait_for_compiles()\ndeadline = ").replace("+ 120", "+ 0")
    assert _python(loads, tmp_path).stdout.split() == [_compiled._READY, "0"]
    # loaded, not compiled anew: no cache file written again, none added
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()} == written


def test_a_child_forked_while_a_kernel_compiles_compiles_its_own(tmp_path):
    """A fork waits for the background compiles: a child forked while a thread compiled inherited numba's
    compiler lock held by a thread it does not have, and hung at its own first compile."""
    import os
    import signal
    import subprocess

    import pytest

    script = (
        "import os, time, numpy as np, losskit as lk\n"
        "from losskit.losses import _compiled\n"
        "z = np.linspace(-1, 1, 40)\n"
        "lk.HuberLoss(delta=0.5).value_and_grad(z, np.zeros(40))  # its kernel compiles in the background\n"
        "deadline = time.monotonic() + 100\n"
        "while not _compiled._COMPILING_ANEW and time.monotonic() < deadline:  # numba compiles it, holding its lock\n"
        "    time.sleep(0.001)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    value, _ = lk.SoftmaxCrossEntropy(impl='fused').value_and_grad(np.zeros((4, 3)), np.arange(4) % 3)\n"
        "    print('log3', round(float(value), 12), flush=True)\n"
        "    os._exit(0)\n"
        "print('child', pid, flush=True)\n"
        "os.waitpid(pid, 0)\n"
    )
    try:  # a hang is the failure: 120 s is many times the two compiles
        run = _python(script, tmp_path, timeout=120)
    except subprocess.TimeoutExpired as hung:
        words = (hung.stdout.decode() if isinstance(hung.stdout, bytes) else hung.stdout or "").split()
        if "child" in words:  # the hung child outlives its parent
            os.kill(int(words[words.index("child") + 1]), signal.SIGKILL)
        pytest.fail("the forked child hung at its first compile")
    words = run.stdout.split()
    assert "log3" in words, run.stderr
    assert words[words.index("log3") + 1] == str(round(np.log(3), 12))  # uniform logits over 3 classes: log 3


def test_a_forked_child_forgets_a_compile_whose_thread_it_does_not_have():
    """A compile marked in progress when the process forked (one started after the fork hook's wait) is
    forgotten in the child, whose next small call starts it again rather than taking the reference for
    ever."""
    script = (
        "import os, numpy as np, losskit as lk\n"
        "from losskit.losses import _compiled\n"
        "lk.HuberLoss(delta=0.5).value_and_grad(np.linspace(-1, 1, 40), np.zeros(40))  # registers the hooks\n"
        "_compiled.wait_for_compiles()\n"
        "_compiled._STATE['no thread'] = _compiled._COMPILING\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child', 'no thread' in _compiled._STATE, len(_compiled._THREADS), flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent', 'no thread' in _compiled._STATE, flush=True)\n"
    )
    assert sorted(_python(script).stdout.splitlines()) == ["child False 0", "parent True"]
