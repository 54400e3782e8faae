"""Where the test suite's time goes: a pytest plugin that records, per test, its wall time and the
seconds numba and XLA spent compiling inside it, in every xdist worker, and prints a summary at the end.

    python -m pytest -p benchmarks.suite_profile                       # the whole suite, as `make test` runs it
    NUMBA_CACHE_DIR=$(mktemp -d) python -m pytest -p benchmarks.suite_profile   # numba's cache empty, as in CI
    LOSSKIT_SUITE_PROFILE=/tmp/prof python -m pytest -p benchmarks.suite_profile tests/test_jax.py

Each worker writes one line per test to ``<dir>/<worker>.tsv`` (``dir``: ``LOSSKIT_SUITE_PROFILE``, else
``.pytest_cache/suite-profile``; its ``*.tsv`` files are removed at the start): the test's id, its wall
seconds (setup, call and teardown), numba's compile seconds and count, and XLA's backend-compile,
lowering and tracing seconds and compile count. The summary (the controller's, after the run) adds
them up per test file and per test function, largest first. numba's seconds are those of its outermost
compiles (a kernel's callees compile inside it and are not counted again); XLA's count includes the
programs found in JAX's disk cache, whose compile time is then the cache read's.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from pathlib import Path

import pytest

#: the columns of a worker's file after the test id and its wall time
FIELDS = ("numba_s", "numba_n", "xla_s", "xla_n", "lower_s", "trace_s")
_XLA_EVENTS = {"/jax/core/compile/backend_compile_duration": ("xla_s", "xla_n"),
               "/jax/core/compile/jaxpr_to_mlir_module_duration": ("lower_s", None),
               "/jax/core/compile/jaxpr_trace_duration": ("trace_s", None)}


def _directory(config) -> Path:
    path = os.environ.get("LOSSKIT_SUITE_PROFILE")
    return Path(path) if path else Path(config.rootpath) / ".pytest_cache" / "suite-profile"


class _Recorder:
    """One process's compile seconds, added to the test that runs while they are spent."""

    def __init__(self):
        self.totals = collections.Counter()
        self._thread = threading.local()  # a kernel may compile in a thread of its own (losskit's first call)

    def numba_start(self):
        depth = getattr(self._thread, "depth", 0)
        if depth == 0:
            self._thread.started = time.perf_counter()
        self._thread.depth = depth + 1

    def numba_end(self):
        self._thread.depth -= 1
        if self._thread.depth == 0:  # the outermost compile: its callees' compiles are inside its time
            self.totals["numba_s"] += time.perf_counter() - self._thread.started
            self.totals["numba_n"] += 1

    def jax_event(self, event, duration, **_):
        seconds, count = _XLA_EVENTS.get(event, (None, None))
        if seconds:
            self.totals[seconds] += duration
        if count:
            self.totals[count] += 1


def _listen(recorder: _Recorder) -> None:
    try:
        from numba.core import event
    except ImportError:
        pass
    else:
        class _Compiles(event.Listener):
            def on_start(self, ev):
                recorder.numba_start()

            def on_end(self, ev):
                recorder.numba_end()

        event.register("numba:compile", _Compiles())
    try:
        import jax.monitoring
    except ImportError:
        return
    jax.monitoring.register_event_duration_secs_listener(recorder.jax_event)


def pytest_configure(config):
    worker = getattr(config, "workerinput", None)
    directory = _directory(config)
    directory.mkdir(parents=True, exist_ok=True)
    if worker is None:  # the last run's files, and nothing else the directory may hold
        for stale in directory.glob("*.tsv"):
            stale.unlink()
    name = worker["workerid"] if worker else "main"
    config._suite_profile = (_Recorder(), open(directory / f"{name}.tsv", "w", buffering=1))  # noqa: SIM115
    _listen(config._suite_profile[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    recorder, out = item.config._suite_profile
    recorder.totals.clear()
    started = time.perf_counter()
    yield
    wall = time.perf_counter() - started
    out.write("\t".join([item.nodeid, f"{wall:.4f}", *(f"{recorder.totals[f]:.4f}" for f in FIELDS)]) + "\n")


def read(directory: Path) -> list[tuple[str, float, dict]]:
    """``(test id, wall seconds, {field: value})`` of every test in ``directory``'s worker files."""
    rows = []
    for path in sorted(directory.glob("*.tsv")):
        for line in path.read_text().splitlines():
            nodeid, wall, *values = line.split("\t")
            rows.append((nodeid, float(wall), dict(zip(FIELDS, map(float, values), strict=True))))
    return rows


def summary(rows, top: int = 15) -> str:
    """The totals, then the test files and the test functions that took the most wall time."""
    total = collections.Counter()
    by_file, by_function = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for nodeid, wall, values in rows:
        function = re.sub(r"\[.*", "", nodeid)
        for group, key in ((by_file, nodeid.split("::")[0]), (by_function, function)):
            group[key]["wall"] += wall
            group[key]["tests"] += 1
            group[key].update(values)
        total["wall"] += wall
        total.update(values)
    lines = [f"suite profile: {len(rows)} tests, {total['wall']:.1f} worker-seconds; numba compiled "
             f"{total['numba_s']:.1f} s ({int(total['numba_n'])} outermost compiles); XLA {total['xla_s']:.1f} s "
             f"({int(total['xla_n'])} programs, disk-cache reads included), lowering {total['lower_s']:.1f} s, "
             f"tracing {total['trace_s']:.1f} s"]
    for title, group in (("test files", by_file), ("test functions", by_function)):
        lines.append(f"{title} by worker-seconds (wall, numba, XLA, tests):")
        for key, c in sorted(group.items(), key=lambda kv: -kv[1]["wall"])[:top]:
            lines.append(f"  {c['wall']:8.1f} {c['numba_s']:7.1f} {c['xla_s']:7.1f} {int(c['tests']):6d}  {key}")
    return "\n".join(lines)


def pytest_unconfigure(config):
    profile = getattr(config, "_suite_profile", None)
    if profile is None:
        return
    profile[1].close()
    if getattr(config, "workerinput", None) is None:
        rows = read(_directory(config))
        if rows:
            print("\n" + summary(rows))
