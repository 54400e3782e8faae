"""Post-training losses fused with the output layer, against naive torch eager (logits materialised).

    python -m benchmarks.posttraining                  # 4096 tokens, D = 1024, V = 128256 (about 15 min)
    python -m benchmarks.posttraining --smoke          # tiny sizes, one repeat
    python -m benchmarks.posttraining --markdown FILE  # also write the report
    python -m benchmarks.posttraining --pairs 4 --case "generalised JSD ..."  # 2048 tokens, one case

Each (case, implementation, repeat) runs in its own process, the implementations alternating
within a round: seconds of one forward + backward, and the peak resident memory above the inputs
(``VmHWM`` after a reset, as ``python -m benchmarks`` measures the linear cross-entropy). Float32.
Before any timing, every implementation's loss and gradients are checked against the naive one on
a small problem (:func:`check`). The naive computation holds the N x V logits and their gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from ._report import write_markdown

FULL = {"pairs": 8, "tokens": 256, "features": 1024, "vocab": 128256}  # 2B x T = 4096 tokens
SMOKE = {"pairs": 2, "tokens": 8, "features": 16, "vocab": 300}
BETA = 0.1


def _inputs(size, seed=0):
    rng = np.random.default_rng(seed)
    n_rows, n_tok, n_feat, n_vocab = 2 * size["pairs"], size["tokens"], size["features"], size["vocab"]
    hidden = rng.standard_normal((n_rows, n_tok, n_feat), dtype=np.float32)
    classifier = rng.standard_normal((n_vocab, n_feat), dtype=np.float32)
    classifier *= np.float32(0.03)
    target = rng.integers(0, n_vocab, size=(n_rows, n_tok))
    target[:, : n_tok // 4] = -100  # the prompt: a quarter of each sequence
    upstream = rng.standard_normal((n_rows, n_tok), dtype=np.float32)
    ref_logps = rng.normal(-n_tok * 8.0, 5.0, size=n_rows).astype(np.float32)
    teacher_hidden = rng.standard_normal((n_rows, n_tok, n_feat), dtype=np.float32)  # a teacher of the same width
    teacher_classifier = rng.standard_normal((n_vocab, n_feat), dtype=np.float32)
    teacher_classifier *= np.float32(0.03)
    return {"hidden": hidden, "classifier": classifier, "target": target, "upstream": upstream,
            "ref_logps": ref_logps, "teacher_hidden": teacher_hidden, "teacher_classifier": teacher_classifier}


# -- implementations: each returns (value, grad_hidden, grad_classifier) as NumPy ------------------
def _torch_leaves(a):
    import torch

    return (torch.from_numpy(a["hidden"]).requires_grad_(True), torch.from_numpy(a["classifier"]).requires_grad_(True),
            torch.from_numpy(a["target"]))


def _finish(value, hidden, classifier):
    value.backward()
    return float(value.detach()), hidden.grad.numpy(), classifier.grad.numpy()


def _naive_logps(hidden, classifier, target):
    import torch

    logp = torch.log_softmax(hidden @ classifier.T, dim=-1)
    picked = torch.gather(logp, -1, target.clamp(min=0)[..., None])[..., 0]
    return torch.where(target != -100, picked, 0.0)


def naive_logprobs(a):
    import torch

    hidden, classifier, target = _torch_leaves(a)
    return _finish((_naive_logps(hidden, classifier, target) * torch.from_numpy(a["upstream"])).sum(), hidden,
                   classifier)


def losskit_logprobs(a):
    import losskit as lk

    lk.linear_logprobs(a["hidden"], a["classifier"], a["target"], entropy=True)  # the forward a trainer logs
    grads = lk.linear_logprobs_vjp(a["hidden"], a["classifier"], a["target"], a["upstream"])
    return None, grads[0], grads[1]


def losskit_torch_logprobs(a):
    import torch

    import losskit.torch as lt

    hidden, classifier, target = _torch_leaves(a)
    out = lt.linear_logprobs(hidden, classifier, target, entropy=True)
    return _finish((out.logps * torch.from_numpy(a["upstream"])).sum(), hidden, classifier)


def losskit_linear_ce(a):
    from losskit.losses.linear import linear_cross_entropy_value_and_grad

    n_feat = a["hidden"].shape[-1]
    value, grads = linear_cross_entropy_value_and_grad(a["hidden"].reshape(-1, n_feat), a["classifier"],
                                                       a["target"].reshape(-1), ignore_index=-100)
    return float(value), grads[0], grads[1]


def naive_logprobs_forward(a):
    import torch

    hidden, classifier, target = (t.detach() for t in _torch_leaves(a))
    with torch.no_grad():
        logits = hidden @ classifier.T
        logp = torch.log_softmax(logits, dim=-1)
        picked = torch.gather(logp, -1, target.clamp(min=0)[..., None])[..., 0]
        entropy = torch.where(target != -100, -(logp.exp() * logp).sum(-1), 0.0)
        return float(torch.where(target != -100, picked, 0.0).sum()), entropy.numpy(), None


def losskit_logprobs_forward(a):
    import losskit as lk

    out = lk.linear_logprobs(a["hidden"], a["classifier"], a["target"], entropy=True)
    return float(out.logps.sum()), out.entropy, None


# -- DPO (sigmoid, beta 0.1, TRL's definition) -----------------------------------------------------------
def naive_dpo(a):
    import torch

    hidden, classifier, target = _torch_leaves(a)
    ref = torch.from_numpy(a["ref_logps"])
    sums = _naive_logps(hidden, classifier, target).sum(-1)
    n_pairs = sums.shape[0] // 2
    margin = (sums[:n_pairs] - ref[:n_pairs]) - (sums[n_pairs:] - ref[n_pairs:])
    return _finish(-torch.nn.functional.logsigmoid(BETA * margin).mean(), hidden, classifier)


def losskit_dpo(a):
    import losskit as lk

    value, grads = lk.linear_preference_loss_value_and_grad(a["hidden"], a["classifier"], a["target"], loss="dpo",
                                                            ref_logps=a["ref_logps"], beta=BETA)
    return float(value), grads[0], grads[1]


def losskit_torch_dpo(a):
    import torch

    import losskit.torch as lt

    hidden, classifier, target = _torch_leaves(a)
    loss = lt.LinearPreferenceLoss("dpo", beta=BETA)(hidden, classifier, target, torch.from_numpy(a["ref_logps"]))
    return _finish(loss, hidden, classifier)


# -- GRPO (DAPO's token-level loss, beta 0.04, TRL's definitions) ---------------------------------------
GRPO = {"beta": 0.04, "epsilon_low": 0.2, "epsilon_high": 0.28, "normalization": "bnpo"}


def _grpo_extras(a):
    """Per-token old and reference log-probs near the model's (about -log V), one advantage per
    sequence: fixed draws, so every implementation sees the same ratios (some clipped)."""
    n_rows, n_tok = a["target"].shape
    rng = np.random.default_rng(7)
    centre = -np.log(a["classifier"].shape[0])
    old = (centre + rng.normal(0.0, 0.5, size=(n_rows, n_tok))).astype(np.float32)
    ref = (centre + rng.normal(0.0, 0.5, size=(n_rows, n_tok))).astype(np.float32)
    return old, rng.standard_normal(n_rows).astype(np.float32), ref


def naive_grpo(a):
    import torch

    hidden, classifier, target = _torch_leaves(a)
    old, advantages, ref = (torch.from_numpy(x) for x in _grpo_extras(a))
    logp = _naive_logps(hidden, classifier, target)
    mask = (target != -100).float()
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - GRPO["epsilon_low"], 1 + GRPO["epsilon_high"])
    per_token = -torch.min(ratio * advantages[:, None], clipped * advantages[:, None])
    per_token = per_token + GRPO["beta"] * (torch.exp(ref - logp) - (ref - logp) - 1)
    return _finish((per_token * mask).sum() / mask.sum(), hidden, classifier)


def losskit_grpo(a):
    import losskit as lk

    old, advantages, ref = _grpo_extras(a)
    value, grads = lk.linear_grpo_loss_value_and_grad(a["hidden"], a["classifier"], a["target"], old_logps=old,
                                                      advantages=advantages, ref_logps=ref, **GRPO)
    return float(value), grads[0], grads[1]


def losskit_torch_grpo(a):
    import torch

    import losskit.torch as lt

    hidden, classifier, target = _torch_leaves(a)
    old, advantages, ref = (torch.from_numpy(x) for x in _grpo_extras(a))
    loss = lt.LinearGRPOLoss(**GRPO)(hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref)
    return _finish(loss, hidden, classifier)


# -- generalised JSD distillation (GKD, TRL's generalized_jsd_loss), beta 0.5 ---------------------------
JSD_BETA = 0.5


def naive_jsd(a):
    import torch

    hidden, classifier, target = _torch_leaves(a)
    with torch.no_grad():
        teacher = torch.log_softmax(torch.from_numpy(a["teacher_hidden"]) @ torch.from_numpy(a["teacher_classifier"]).T,
                                    -1)
    student = torch.log_softmax(hidden @ classifier.T, -1)
    mixture = torch.logsumexp(torch.stack([student + np.log(1 - JSD_BETA), teacher + np.log(JSD_BETA)]), dim=0)
    per_token = JSD_BETA * (teacher.exp() * (teacher - mixture)).sum(-1) + \
        (1 - JSD_BETA) * (student.exp() * (student - mixture)).sum(-1)
    keep = target != -100
    return _finish(per_token[keep].sum() / keep.sum(), hidden, classifier)


def losskit_jsd(a):
    import losskit as lk

    value, grads = lk.linear_jsd_loss_value_and_grad(a["hidden"], a["classifier"], a["teacher_hidden"],
                                                     a["teacher_classifier"], a["target"], beta=JSD_BETA)
    return float(value), grads[0], grads[1]


def losskit_torch_jsd(a):
    import torch

    import losskit.torch as lt

    hidden, classifier, target = _torch_leaves(a)
    value = lt.LinearJSDLoss(beta=JSD_BETA)(hidden, classifier, torch.from_numpy(a["teacher_hidden"]),
                                            torch.from_numpy(a["teacher_classifier"]), target)
    return _finish(value, hidden, classifier)


def _every_token_kept(fn):
    """``fn`` on the same inputs with no prompt: every token a target (nothing for a sweep to skip)."""
    def run(a):
        return fn({**a, "target": np.where(a["target"] < 0, 0, a["target"])})

    run.__name__ = fn.__name__
    return run


CASES = {
    "per-token log-probs + entropy, forward only (reference / old log-probs)": {
        "torch naive (no_grad)": naive_logprobs_forward,
        "losskit linear_logprobs": losskit_logprobs_forward,
        "losskit linear_cross_entropy (for scale)": losskit_linear_ce,
    },
    "per-token log-probs (+ entropy), fwd + bwd": {
        "torch naive": naive_logprobs,
        "losskit linear_logprobs + vjp": losskit_logprobs,
        "losskit.torch linear_logprobs": losskit_torch_logprobs,
        "losskit linear_cross_entropy (for scale)": losskit_linear_ce,
    },
    "DPO (sigmoid, beta 0.1), fwd + bwd": {
        "torch naive": naive_dpo,
        "losskit linear_preference_loss_value_and_grad": losskit_dpo,
        "losskit.torch LinearPreferenceLoss": losskit_torch_dpo,
    },
    "DPO (sigmoid, beta 0.1), every token kept (no prompt), fwd + bwd": {
        "torch naive": _every_token_kept(naive_dpo),
        "losskit linear_preference_loss_value_and_grad": _every_token_kept(losskit_dpo),
        "losskit.torch LinearPreferenceLoss": _every_token_kept(losskit_torch_dpo),
    },
    "GRPO (token ratios, bnpo, beta 0.04), fwd + bwd": {
        "torch naive": naive_grpo,
        "losskit linear_grpo_loss_value_and_grad": losskit_grpo,
        "losskit.torch LinearGRPOLoss": losskit_torch_grpo,
    },
    "generalised JSD distillation (beta 0.5; teacher of the same size), fwd + bwd": {
        "torch naive": naive_jsd,
        "losskit linear_jsd_loss_value_and_grad": losskit_jsd,
        "losskit.torch LinearJSDLoss": losskit_torch_jsd,
    },
}


def check(size) -> None:
    """Every implementation's gradients agree with the naive one's on a small problem."""
    small = _inputs({**size, "pairs": 2, "tokens": 8, "vocab": min(size["vocab"], 512)}, seed=1)
    for case, impls in CASES.items():
        reference = None
        for name, fn in impls.items():
            if "for scale" in name:
                continue
            _, grad_hidden, grad_classifier = fn(small)  # (forward-only cases: the entropy, and None)
            if reference is None:
                reference = (grad_hidden, grad_classifier)
                continue
            for mine, ref in zip((grad_hidden, grad_classifier), reference, strict=True):
                if ref is None:
                    continue
                scale = float(np.abs(ref).max())
                if not np.allclose(mine, ref, rtol=1e-4, atol=1e-4 * scale):
                    raise SystemExit(f"{case}: {name} disagrees with {next(iter(impls))}")


# -- one measurement per process --------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _child(case, name, size) -> dict:
    fn = CASES[case][name]
    fn(_inputs({**size, "pairs": 1, "tokens": 4, "vocab": 64}))  # imports and JIT loads, not measured
    arrays = _inputs(size)
    _reset_peak()
    base = _rss()
    start = time.perf_counter()
    fn(arrays)
    return {"seconds": time.perf_counter() - start, "extra": _rss() - base}


def _measure(case, name, size) -> dict:
    command = [sys.executable, "-m", "benchmarks.posttraining", "--child", json.dumps([case, name, size])]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{case} / {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown")
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    parser.add_argument("--pairs", type=int, help="preference pairs (2 sequences of 256 tokens each; default 8)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, name, size = json.loads(args.child)
        print(json.dumps(_child(case, name, size)))
        return
    size = SMOKE if args.smoke else FULL
    if args.pairs:
        size = {**size, "pairs": args.pairs}
    repeats = 1 if args.smoke else args.repeats
    check(size)
    n_tokens = 2 * size["pairs"] * size["tokens"]
    logits_mib = n_tokens * size["vocab"] * 4 / 2**20
    lines = [f"Command: `python -m benchmarks.posttraining{' --smoke' if args.smoke else ''}`; {n_tokens} tokens "
             f"({2 * size['pairs']} x {size['tokens']}), D = {size['features']}, V = {size['vocab']}, float32 "
             f"(logits {logits_mib:.0f} MiB); {os.cpu_count()} cores, load average at start "
             f"{os.getloadavg()[0]:.2f}; median of {repeats} alternating rounds, one process each.", ""]
    for case, impls in CASES.items():
        if args.case and case not in args.case:
            continue
        runs = {name: [] for name in impls}
        for _ in range(repeats):
            for name in impls:
                runs[name].append(_measure(case, name, size))
        reference = statistics.median(r["seconds"] for r in runs[next(iter(impls))])
        lines += [f"{case}:", "", "| implementation | seconds (median) | min | max | speed-up vs naive | "
                  "extra peak MiB |", "|---|---|---|---|---|---|"]
        for name, results in runs.items():
            seconds = [r["seconds"] for r in results]
            med = statistics.median(seconds)
            extra = statistics.median(r["extra"] for r in results) / 2**20
            lines.append(f"| {name} | {med:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | {reference / med:.2f}x | "
                         f"{extra:.0f} |")
        lines.append("")
        print("\n".join(lines[-len(impls) - 4:]), flush=True)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.markdown:
        write_markdown(args.markdown, report)


if __name__ == "__main__":
    main()
