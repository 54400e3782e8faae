"""Where one fused DPO step's time goes, on NumPy: the sweep's pieces timed inside one call at the
post-training benchmark's size (16 sequences x 256 tokens, a quarter of each a prompt, D = 1024,
V = 128256, float32; ``benchmarks.posttraining``'s inputs).

    python -m benchmarks.posttraining_parts

Prints the seconds spent in the logits gemm, the statistics and gradient kernels, the classifier's
gradient (``accumulate_at_b``) and the whole backprop (``d hidden`` gemm + that), and the call's
total: the gemms against the rest. Then the floor both sides stand on: the three gemms of all 4096
tokens (``h C^T``, ``z C``, ``z^T h``, in chunks of 512 tokens, medians of 3) with NumPy's BLAS and,
when torch is installed, with torch's.
"""

from __future__ import annotations

import time

import losskit as lk
from losskit.losses import logprobs

from .posttraining import BETA, FULL, _inputs


def _timed(times, name, fn):
    def run(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return out

    return run


def _gemm_floor(library, a, rounds=3):
    """Seconds of the three gemms over all tokens, chunk by chunk (``library``: "numpy" or "torch")."""
    import statistics

    import numpy as np

    hidden = a["hidden"].reshape(-1, a["hidden"].shape[-1])
    classifier = a["classifier"]
    rows = 512
    z = np.empty((rows, classifier.shape[0]), np.float32)
    grad = np.empty_like(classifier)
    if library == "torch":
        import torch

        hidden, classifier, z, grad = (torch.from_numpy(x) for x in (hidden, classifier, z, grad))

        def three(h):
            torch.mm(h, classifier.T, out=z)
            torch.mm(z, classifier)
            torch.mm(z.T, h, out=grad)
    else:
        def three(h):
            np.matmul(h, classifier.T, out=z)
            np.matmul(z, classifier)
            np.matmul(z.T, h, out=grad)
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        for first in range(0, hidden.shape[0], rows):
            three(hidden[first:first + rows])
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    a = _inputs(FULL)
    small = _inputs({**FULL, "pairs": 1, "tokens": 4, "features": 8, "vocab": 64})
    lk.linear_preference_loss_value_and_grad(small["hidden"], small["classifier"], small["target"],
                                             ref_logps=small["ref_logps"], beta=BETA)  # kernels loaded
    times: dict[str, float] = {}
    host, tokens = logprobs._Host, logprobs._Tokens
    saved = {(host, "logits"): host.logits, (host, "stats"): host.stats, (host, "grad"): host.grad,
             (tokens, "backprop"): tokens.backprop, (logprobs, "accumulate_at_b"): logprobs.accumulate_at_b}
    names = {"logits": "logits gemm", "stats": "statistics kernel", "grad": "gradient kernel",
             "backprop": "backprop (d hidden gemm + d classifier)", "accumulate_at_b": "d classifier (accumulate_at_b)"}
    for (owner, attr), fn in saved.items():
        setattr(owner, attr, _timed(times, names[attr], fn))
    try:
        start = time.perf_counter()
        lk.linear_preference_loss_value_and_grad(a["hidden"], a["classifier"], a["target"], ref_logps=a["ref_logps"],
                                                 beta=BETA)
        total = time.perf_counter() - start
    finally:
        for (owner, attr), fn in saved.items():
            setattr(owner, attr, fn)
    for name, seconds in times.items():
        print(f"{name}: {seconds:.2f} s")
    print(f"total: {total:.2f} s")
    print(f"three gemms of all {a['target'].size} tokens, NumPy: {_gemm_floor('numpy', a):.2f} s")
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    print(f"three gemms of all {a['target'].size} tokens, torch: {_gemm_floor('torch', a):.2f} s")


if __name__ == "__main__":
    main()
