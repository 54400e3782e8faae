"""numba's threads start with libgomp spinning 10,000 rounds when idle, unless the user says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

#: run in a fresh process (libgomp reads its settings once, when loaded): import a kernel module, then
#: report the threading layer and whether the environment still holds GOMP_SPINCOUNT
PROBE = ("import os, losskit.fused.vmath, numba; "
         "print('layer', numba.threading_layer(), 'GOMP_SPINCOUNT' in os.environ, os.environ.get('GOMP_SPINCOUNT'))")


def _probe(**settings):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", **settings)  # libgomp prints its settings to stderr when loaded
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
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
