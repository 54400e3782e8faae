"""benchmarks/calibrate.py runs end to end at tiny sizes, so it never rots (timings are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_calibrate_benchmark_smoke_run_fills_its_section(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("distributed")
    report = tmp_path / "bench.md"
    report.write_text("# Benchmarks\n\nkept\n")
    out = subprocess.run([sys.executable, "-m", "benchmarks.calibrate", "--memory-rows", "3000", "--classes", "7",
                          "--file-rows", "20000", "--repeats", "1", "--batch-rows", "5000", "--data", str(tmp_path),
                          "--markdown", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")
    for row in ("| lk.calibrate |", "| scikit-learn _TemperatureScaling |", "| losskit eval |",
                "| losskit calibrate |", "| losskit calibrate --dask (2 workers) |"):
        assert row in text, row
    assert "lk.calibrate / scikit-learn time" in text and "Dask T relative difference" in text
