"""``losskit eval`` against pyarrow reading the same file: throughput, peak memory, Dask.

    python -m benchmarks.eval                        # 50M-row binary + 10M x 10 multiclass files
    python -m benchmarks.eval --rows-scale 0.01      # the same at 1/100 size (a quick check)
    python -m benchmarks.eval --markdown BENCHMARKS.md   # replace the eval section of that file

Each file is written once (Parquet, 1M-row row groups, snappy) into --data. Every timed run is a
fresh subprocess, so its peak RSS (``ru_maxrss``) is its own; a losskit run first scores the
file's first 10,000 rows (imports and the load of the compiled kernels: once per process, not
per row), then is timed; the runs alternate (pyarrow alone,
losskit eval, losskit eval --dask) for --repeats rounds, and the table gives the median and the
ratio to pyarrow's median in the same run. "pyarrow alone" is ``ParquetFile.iter_batches`` with
the same batch size (reading and decoding every column, nothing else), the reader a streaming
evaluation needs, with ``pre_buffer=False`` as losskit reads (faster and leaner on a local file
here) and with pyarrow's defaults; ``pq.read_table`` (the whole file at once) is shown too. The
Dask run is timed on a running, warmed-up 2-worker cluster (its start-up is printed apart); its
peak RSS is the largest of the client's and each worker's.
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

CASES = {
    "binary": {"rows": 50_000_000, "classes": 1},
    "multiclass": {"rows": 10_000_000, "classes": 10},
}
ROW_GROUP = 1_000_000
MARK_BEGIN = "<!-- eval benchmark: begin -->"
MARK_END = "<!-- eval benchmark: end -->"


def write_file(path: Path, rows: int, classes: int, seed: int = 0) -> Path:
    """A file of ``rows`` predictions: ``logit`` (binary) or ``logit_0..K-1`` (float32), ``label`` (int8)
    drawn from the model's own probabilities (a calibrated model), ``weight`` (float32)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    temp = path.with_suffix(".part")
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        if classes == 1:
            logit = rng.normal(0.0, 2.0, n).astype(np.float32)
            label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
            columns = {"logit": logit}
        else:
            logits = rng.normal(0.0, 2.0, (n, classes)).astype(np.float32)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            label = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(0, classes - 1).astype(np.int8)
            columns = {f"logit_{k}": logits[:, k] for k in range(classes)}
        table = pa.table({**columns, "label": label, "weight": rng.uniform(0.5, 2.0, n).astype(np.float32)})
        if writer is None:
            writer = pq.ParquetWriter(temp, table.schema, compression="snappy")
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()
    os.replace(temp, path)
    return path


# -- the timed runs, each in a child process -----------------------------------------------------

def _warm_up(path: str) -> None:
    """Score the file's first rows once: the imports and the load of the compiled kernels happen once
    per process, whatever the file's size, and are left out of the timed run."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    import losskit as lk

    first = next(pq.ParquetFile(path).iter_batches(batch_size=10_000))
    with tempfile.TemporaryDirectory() as scratch:
        sample = Path(scratch) / "sample.parquet"
        pq.write_table(pa.Table.from_batches([first]), sample)
        lk.evaluate(sample, target="label", weight="weight")


def _child(kind: str, path: str, batch_rows: int) -> dict:
    import resource

    if kind.startswith("losskit"):
        _warm_up(path)
    start = time.perf_counter()
    seconds, extra = None, {}
    if kind.startswith("pyarrow iter_batches"):
        import pyarrow.parquet as pq

        rows = 0
        options = {} if kind.endswith("defaults") else {"pre_buffer": False}
        for batch in pq.ParquetFile(path, **options).iter_batches(batch_size=batch_rows):
            rows += batch.num_rows
    elif kind == "pyarrow read_table":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).num_rows
    elif kind == "losskit eval":
        import losskit as lk

        report = lk.evaluate(path, target="label", weight="weight", batch_rows=batch_rows)
        rows, extra = report.rows, {"metrics": report.metrics, "engine": report.engine}
    else:
        # the cluster --dask starts (2 workers of one thread on this machine), started and warmed up
        # untimed (its start-up is reported apart), then scoring timed as with --scheduler ADDRESS;
        # the workers' own peak RSS is read before it closes
        from distributed import Client, LocalCluster

        import losskit as lk

        with LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            extra["cluster_start_s"] = time.perf_counter() - start
            client.run(_warm_up, path)
            start = time.perf_counter()
            report = lk.evaluate(path, target="label", weight="weight", batch_rows=batch_rows,
                                 scheduler=cluster.scheduler_address)
            seconds = time.perf_counter() - start
            peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        rows = report.rows
        extra.update({"metrics": report.metrics, "engine": report.engine, "worker_peak_mb": max(peaks.values())})
    if seconds is None:
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rows": rows, "peak_mb": max(peak, extra.pop("worker_peak_mb", 0.0)), **extra}


def run_child(kind: str, path: Path, batch_rows: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.eval", "--child", kind, str(path),
                          "--batch-rows", str(batch_rows)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


KINDS = ("pyarrow iter_batches", "pyarrow iter_batches defaults", "pyarrow read_table", "losskit eval",
         "losskit eval --dask")


def bench(path: Path, repeats: int, batch_rows: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind in KINDS:
            runs[kind].append(run_child(kind, path, batch_rows))
    return runs


def table(name: str, path: Path, runs: dict[str, list[dict]]) -> list[str]:
    reference = statistics.median(r["seconds"] for r in runs["pyarrow iter_batches"])
    rows = runs["losskit eval"][0]["rows"]
    size = path.stat().st_size / 1e6
    lines = [f"**{name}**: {rows:,} rows, {path.name} ({size:,.0f} MB on disk)", "",
             "| run | median s | min | max | M rows/s | x pyarrow iter_batches speed | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for kind, results in runs.items():
        times = [r["seconds"] for r in results]
        median = statistics.median(times)
        peak = max(r["peak_mb"] for r in results)
        lines.append(f"| {kind} | {median:.2f} | {min(times):.2f} | {max(times):.2f} | {rows / median / 1e6:.1f} "
                     f"| {reference / median:.2f} | {peak:,.0f} |")
    single = statistics.median(r["seconds"] for r in runs["losskit eval"])
    on_dask = statistics.median(r["seconds"] for r in runs["losskit eval --dask"])
    a, b = runs["losskit eval"][0]["metrics"], runs["losskit eval --dask"][0]["metrics"]
    worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-300) for k in a if a[k] is not None)
    start_up = statistics.median(r["cluster_start_s"] for r in runs["losskit eval --dask"])
    lines += ["", f"Dask ({runs['losskit eval --dask'][0]['engine']}) / single process: {on_dask / single:.2f}x "
              f"(the cluster's start-up, {start_up:.1f} s, apart); largest relative difference of a metric "
              f"between the two: {worst:.1e}.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "losskit-eval-bench")
    parser.add_argument("--rows-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.batch_rows)))
        return
    args.data.mkdir(parents=True, exist_ok=True)
    lines = [MARK_BEGIN, "## losskit eval: throughput and memory against pyarrow", "",
             f"Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.eval --markdown "
             f"BENCHMARKS.md` ({time.strftime('%Y-%m-%d')}; fresh `pip install .` plus pyarrow and Dask; "
             f"{os.cpu_count()} cores; median of {args.repeats} alternating rounds, each run a fresh process, "
             f"batches of {args.batch_rows:,} rows; the files in the page cache, as every run reads them; losskit "
             f"runs timed after scoring the file's first 10,000 rows once, which loads the compiled kernels; the "
             f"Dask cluster started and warmed up untimed). Files: float32 logits, int8 labels drawn from the "
             f"logits' own probabilities, float32 weights in [0.5, 2], snappy, 1M-row row groups. Goals: "
             f"losskit eval at least 0.5x pyarrow's speed, peak RSS under 1 GB, Dask within 1.5x of one "
             f"process. Generated by the harness, not typed.", ""]
    for name, case in CASES.items():
        rows = max(int(case["rows"] * args.rows_scale), 1000)
        path = write_file(args.data / f"{name}-{rows}.parquet", rows, case["classes"])
        runs = bench(path, args.repeats, args.batch_rows)
        section = table(name, path, runs)
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
