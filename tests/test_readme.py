"""The README's Python examples run as written, and say what they claim."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    if "import torch" in BLOCKS[index]:
        pytest.importorskip("torch")
    if "import jax" in BLOCKS[index]:
        pytest.importorskip("jax")
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    if index == 0:  # the per-task example: its last gradient is 2 (yhat - y) / y.size, as commented
        yhat, y = namespace["yhat"], namespace["y"]
        np.testing.assert_allclose(namespace["grad"], 2 * (yhat - y) / y.size)


def test_readme_gives_the_two_setup_commands_that_ci_runs():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
