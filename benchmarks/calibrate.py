"""``lk.calibrate`` / ``losskit calibrate`` against their peers, measured in the same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.calibrate           # both parts
    python -m benchmarks.calibrate --part memory --memory-rows 100000    # a quick check
    python -m benchmarks.calibrate --markdown BENCHMARKS.md              # replace the calibrate section

**memory**: fitting one temperature on ``--memory-rows`` x ``--classes`` float32 logits held in memory,
``lk.calibrate`` against scikit-learn's temperature fit (``sklearn.calibration._TemperatureScaling``,
the calibrator ``CalibratedClassifierCV(method="temperature")`` fits: bounded Brent in log beta on
``HalfMultinomialLoss``). Each run is a fresh process that draws the same seeded logits, then times
the fit alone (``lk.calibrate``'s compiled passes are loaded by a fit on 1,000 rows first).

**file**: ``losskit calibrate`` on the eval benchmark's 50M-row binary Parquet file (written by
:func:`benchmarks.eval.write_file` if missing) against ``losskit eval`` on the same file: wall time,
peak RSS (``ru_maxrss`` of the fresh process), passes; and on a warmed-up 2-worker Dask cluster,
whose temperature must equal the single process's to 1e-12. Runs alternate for --repeats rounds;
the tables give medians and ratios to the peer's median in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MARK_BEGIN = "<!-- calibrate benchmark: begin -->"
MARK_END = "<!-- calibrate benchmark: end -->"


def logits_in_memory(rows: int, classes: int, seed: int = 0):
    """Over-confident float32 logits (the label's logit raised, every logit scaled by 3) and int labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logits = rng.standard_normal((rows, classes), dtype=np.float32)
    logits[np.arange(rows), labels] += 1.5
    logits *= np.float32(3.0)
    return logits, labels


def _memory_child(kind: str, rows: int, classes: int) -> dict:
    logits, labels = logits_in_memory(rows, classes)
    if kind == "lk.calibrate":
        import losskit as lk

        lk.calibrate(logits[:1000], labels[:1000])  # loads the compiled passes (once per process)
        start = time.perf_counter()
        fitted = lk.calibrate(logits, labels)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "temperature": fitted.params["temperature"], "passes": fitted.passes}
    from sklearn.calibration import _TemperatureScaling

    if kind.endswith("float64"):  # scikit-learn fits in the logits' dtype: its float32 T is good to ~3e-4 only
        logits = logits.astype(np.float64)
    start = time.perf_counter()
    fitted = _TemperatureScaling().fit(logits, labels)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "temperature": 1.0 / float(fitted.beta_)}


def _file_child(kind: str, path: str, batch_rows: int) -> dict:
    import resource

    import losskit as lk
    from benchmarks.eval import _warm_up
    from losskit.evaluation.calibration import files

    _warm_up(path)
    first = Path(path).with_name("calibrate-warm-up.parquet")
    if not first.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=10_000))
        pq.write_table(pa.Table.from_batches([batch]), first)
    files.fit(str(first), target="label", weight="weight")  # the compiled passes, loaded once per process
    extra = {}
    start = time.perf_counter()
    if kind == "losskit eval":
        report = lk.evaluate(path, target="label", weight="weight", batch_rows=batch_rows)
        extra = {"rows": report.rows}
    elif kind == "losskit calibrate":
        fit = files.fit(path, target="label", weight="weight", batch_rows=batch_rows)
        extra = {"rows": fit.calibration.rows, "temperature": fit.calibration.params["temperature"],
                 "passes": fit.calibration.passes, "nll": [fit.calibration.nll_before, fit.calibration.nll_after]}
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(processes=True, threads_per_worker=1, n_workers=2, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            client.run(_warm_up, path)
            start = time.perf_counter()
            fit = files.fit(path, target="label", weight="weight", batch_rows=batch_rows,
                            scheduler=cluster.scheduler_address)
            seconds = time.perf_counter() - start
            peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        extra = {"seconds": seconds, "rows": fit.calibration.rows, "passes": fit.calibration.passes,
                 "temperature": fit.calibration.params["temperature"], "worker_peak_mb": max(peaks.values()),
                 "engine": fit.engine}
    seconds = extra.pop("seconds", time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": max(peak, extra.pop("worker_peak_mb", 0.0)), **extra}


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.calibrate", "--child", *args], capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_part(rows: int, classes: int, repeats: int) -> list[str]:
    runs = {"lk.calibrate": [], "scikit-learn _TemperatureScaling": []}
    for _ in range(repeats):
        for kind in runs:
            runs[kind].append(_run("memory", kind, str(rows), str(classes)))
    ours = statistics.median(r["seconds"] for r in runs["lk.calibrate"])
    theirs = statistics.median(r["seconds"] for r in runs["scikit-learn _TemperatureScaling"])
    t_ours = runs["lk.calibrate"][0]["temperature"]
    t_float32 = runs["scikit-learn _TemperatureScaling"][0]["temperature"]
    t_theirs = _run("memory", "scikit-learn float64", str(rows), str(classes))["temperature"]
    lines = [f"**In memory**: one temperature on {rows:,} x {classes} float32 logits (over-confident: the "
             f"label's logit + 1.5, all x 3), median of {repeats} alternating runs, each a fresh process.", "",
             "| fit | median s | min | max | passes over the data |", "|---|---|---|---|---|"]
    for kind, results in runs.items():
        times = [r["seconds"] for r in results]
        passes = results[0].get("passes", "-")
        lines.append(f"| {kind} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | {passes} |")
    lines += ["", f"lk.calibrate / scikit-learn time: **{ours / theirs:.3f}** (goal <= 0.2). T: {t_ours:.10f} "
              f"(ours, float64 sums of the float32 logits) and {t_theirs:.10f} (scikit-learn on the same logits "
              f"as float64, untimed), relative difference {abs(t_ours / t_theirs - 1):.1e} (goal <= 1e-4); "
              f"scikit-learn's timed float32 fit gave {t_float32:.10f} ({abs(t_ours / t_float32 - 1):.1e}: its "
              f"NLL is summed in float32, whose rounding flattens the minimum).", ""]
    return lines


def file_part(path: Path, repeats: int, batch_rows: int) -> list[str]:
    kinds = ("losskit eval", "losskit calibrate", "losskit calibrate --dask (2 workers)")
    runs = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            runs[kind].append(_run("file", kind, str(path), str(batch_rows)))
    evaluation = statistics.median(r["seconds"] for r in runs["losskit eval"])
    single = runs["losskit calibrate"]
    calibrate = statistics.median(r["seconds"] for r in single)
    passes = single[0]["passes"]
    t_single = single[0]["temperature"]
    t_dask = runs["losskit calibrate --dask (2 workers)"][0]["temperature"]
    lines = [f"**Files**: {single[0]['rows']:,} rows, {path.name} ({path.stat().st_size / 1e6:,.0f} MB; the eval "
             f"benchmark's binary file), batches of {batch_rows:,} rows, median of {repeats} alternating runs.", "",
             "| run | median s | min | max | peak RSS MB | passes |", "|---|---|---|---|---|---|"]
    for kind, results in runs.items():
        times = [r["seconds"] for r in results]
        lines.append(f"| {kind} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | "
                     f"{max(r['peak_mb'] for r in results):,.0f} | {results[0].get('passes', '-')} |")
    lines += ["", f"losskit calibrate / losskit eval time: **{calibrate / evaluation:.2f}** with {passes} passes "
              f"(goal <= passes + 1 = {passes + 1}); T = {t_single:.15f}, NLL {single[0]['nll'][0]:.9f} -> "
              f"{single[0]['nll'][1]:.9f}; Dask T relative difference {abs(t_dask / t_single - 1):.1e} "
              f"(goal <= 1e-12).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("memory", "file", "both"), default="both")
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--file-rows", type=int, default=50_000_000)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "losskit-eval-bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        where, kind, *rest = args.child
        result = _memory_child(kind, int(rest[0]), int(rest[1])) if where == "memory" else \
            _file_child(kind, rest[0], int(rest[1]))
        print(json.dumps(result))
        return
    lines = [MARK_BEGIN, "## losskit calibrate: fit time against scikit-learn and against losskit eval", "",
             f"Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.calibrate --markdown "
             f"BENCHMARKS.md` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared with other jobs; "
             f"generated by the harness, not typed).", ""]
    if args.part in ("memory", "both"):
        section = memory_part(args.memory_rows, args.classes, args.repeats)
        print("\n".join(section), flush=True)
        lines += section
    if args.part in ("file", "both"):
        from benchmarks.eval import write_file

        args.data.mkdir(parents=True, exist_ok=True)
        path = write_file(args.data / f"binary-{args.file_rows}.parquet", args.file_rows, 1)
        section = file_part(path, args.repeats, args.batch_rows)
        print("\n".join(section), flush=True)
        lines += section
    lines.append(MARK_END)
    if args.markdown:
        text = args.markdown.read_text() if args.markdown.exists() else ""
        block = "\n".join(lines)
        if MARK_BEGIN in text:
            text = text[:text.index(MARK_BEGIN)] + block + text[text.index(MARK_END) + len(MARK_END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
