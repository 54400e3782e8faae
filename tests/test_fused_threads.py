"""numba's threads start, at the first parallel kernel, with libgomp spinning 10,000 rounds when idle,
unless the user says otherwise; importing the kernels and small (serial) calls start nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

#: run in a fresh process (libgomp reads its settings once, when loaded): a call large enough for the
#: parallel kernel, then the threading layer and whether the environment still holds GOMP_SPINCOUNT
PROBE = ("import os, numpy as np, losskit as lk, numba; "
         "lk.SoftmaxCrossEntropy(impl='fused').value_and_grad(np.zeros((300, 1000), np.float32), np.zeros(300, int)); "
         "print('layer', numba.threading_layer(), 'GOMP_SPINCOUNT' in os.environ, os.environ.get('GOMP_SPINCOUNT'))")


def _run(code, **settings):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", **settings)  # libgomp prints its settings to stderr when loaded
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _probe(**settings):
    out = _run(PROBE, **settings)
    layer = next(line for line in out.stdout.splitlines() if line.startswith("layer")).split()
    if layer[1] != "omp":
        pytest.skip(f"numba's threading layer here is {layer[1]}, not libgomp's")
    spin = [line.split("=")[1].strip().strip("'") for line in out.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")]
    return spin, layer[2:]


def test_numbas_idle_threads_spin_ten_thousand_rounds_and_the_environment_is_left_as_it_was():
    spin, (left, value) = _probe()
    assert spin == ["10000"]  # libgomp's own default is 300,000
    assert (left, value) == ("False", "None")


@pytest.mark.parametrize("settings", [{"GOMP_SPINCOUNT": "12345"}, {"OMP_WAIT_POLICY": "ACTIVE"}])
def test_a_users_own_libgomp_settings_hold(settings):
    spin, (left, value) = _probe(**settings)
    if "GOMP_SPINCOUNT" in settings:
        assert spin == ["12345"] and (left, value) == ("True", "12345")
    else:  # ACTIVE: libgomp's spin count for it (30 billion), not ours
        assert spin and spin != ["10000"] and left == "False"


def test_importing_the_kernels_and_small_calls_start_no_threads():
    """Started threads fix multiprocessing's start method (and a forked child's parallel kernel is stopped):
    found in review, when the threads started at the kernels' import."""
    out = _run("import multiprocessing as mp, numpy as np, losskit as lk, losskit.fused.kernels; "
               "lk.SoftmaxCrossEntropy(impl='fused').value_and_grad(np.zeros((30, 1000), np.float32), np.zeros(30, int)); "
               "mp.set_start_method('spawn'); print('spawn set')")
    assert "spawn set" in out.stdout
    assert "GOMP_SPINCOUNT" not in out.stderr  # libgomp was never loaded


#: the fused linear layers' NumPy sweeps, whose parallel kernels (softmax CE's rows, the JSD's, the log-probs')
#: run on every call, small ones too: each the first parallel kernel of a fresh process
LINEAR_CALLS = {
    "linear_cross_entropy": "lk.linear_cross_entropy(h, w, y)",
    "linear_jsd_loss": "lk.linear_jsd_loss_value_and_grad(h, w, h, w[::-1].copy())",
    "linear_logprobs": "lk.linear_logprobs(h, w, y, entropy=True)",
}


@pytest.mark.parametrize("name", LINEAR_CALLS)
def test_the_linear_sweeps_start_numbas_threads_as_the_loss_calls_do(name):
    """Found after the threads' first change: the JSD's and the log-probs' sweeps ran their parallel kernels
    without starting the threads, and numba started them with libgomp's default 300,000 rounds."""
    out = _run("import numpy as np, losskit as lk, numba; "
               "h, w = np.ones((8, 4), np.float32), np.linspace(-1, 1, 200, dtype=np.float32).reshape(50, 4); "
               "y = np.arange(8); " + LINEAR_CALLS[name] + "; print('layer', numba.threading_layer())")
    layer = next(line for line in out.stdout.splitlines() if line.startswith("layer")).split()[1]
    if layer != "omp":
        pytest.skip(f"numba's threading layer here is {layer}, not libgomp's")
    spin = [line.split("=")[1].strip().strip("'") for line in out.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")]
    assert spin == ["10000"]
