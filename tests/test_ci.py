"""CI must not skip what it is meant to run: where chromium is missing, `.ci/run` stops and the HTML
report test fails under CI=true; elsewhere that test skips, naming why (``-ra`` lists it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_run_stops_when_chromium_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):  # no chromium, no apt-get, no make: nothing else may run
        os.symlink(shutil.which(tool), bin_dir / tool)
    out = subprocess.run([str(bin_dir / "bash"), str(ROOT / ".ci" / "run")], env={"PATH": str(bin_dir)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "chromium is missing" in out.stderr


def test_the_html_report_test_fails_in_ci_and_skips_elsewhere_when_chromium_is_missing(monkeypatch):
    pytest.importorskip("pyarrow")
    pytest.importorskip("typer")
    pytest.importorskip("sklearn")
    import test_cli_eval

    monkeypatch.setattr(test_cli_eval, "_chromium", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must open the HTML report"):
        test_cli_eval._require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium .* is not on PATH"):
        test_cli_eval._require_chromium()
    assert (ROOT / "pyproject.toml").read_text().count('addopts = "-ra ') == 1  # skips listed in the summary
