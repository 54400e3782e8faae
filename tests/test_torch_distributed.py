"""Vocab-parallel cross-entropy on 2 gloo processes on 127.0.0.1 (spawned here, bounded in time)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
WORKER = Path(__file__).parent / "workers" / "vocab_parallel.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vocab_parallel_matches_the_full_vocabulary_loss_on_two_ranks():
    result = subprocess.run([sys.executable, str(WORKER), str(_free_port())], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all cases match" in result.stdout


def test_bad_input_is_refused_before_any_communication():
    import torch

    from losskit import LossInputError
    from losskit.torch.distributed import vocab_parallel_cross_entropy

    with pytest.raises(LossInputError, match="target"):
        vocab_parallel_cross_entropy(torch.zeros(3, 4), torch.zeros(3), vocab_start=0, n_vocab=8)
    with pytest.raises(LossInputError, match="label_smoothing"):
        vocab_parallel_cross_entropy(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), vocab_start=0,
                                     n_vocab=8, label_smoothing=2.0)
    with pytest.raises(LossInputError, match="label 9"):
        vocab_parallel_cross_entropy(torch.zeros(3, 4), torch.tensor([0, 9, 1]), vocab_start=0, n_vocab=8)
