"""Score on a Dask cluster: one task per piece of the files, each a :class:`~.scoring.Scorer`.

Design note: a worker reads its own rows (Parquet row groups, NPY/NPZ row ranges, a CSV file)
straight from the files, so no data travel through the scheduler; what comes back is one
scorer's sums and accumulators per piece, merged on the client in the order the pieces finish
(the sums are float64, so the order changes nothing beyond rounding). The pieces are a few per
worker thread: enough to keep every worker busy to the end, few enough that the accumulators'
transfer costs nothing next to the reading. Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import contextmanager

from .._errors import LossInputError
from . import sources
from .scoring import Scorer, Spec

__all__ = ["score"]

#: pieces per worker thread
PIECES_PER_THREAD = 3
#: seconds to wait for a worker of a scheduler that has none
WORKER_WAIT = 10.0


def _score_piece(spec: Spec, layout: sources.Layout, piece: sources.Piece, batch_rows: int, make=Scorer) -> Scorer:
    scorer = make(spec)
    for batch in sources.prefetched(sources.batches(layout, piece, batch_rows=batch_rows)):
        scorer.update(batch)
    return scorer


@contextmanager
def connected(scheduler: str | None):
    """``(client, where)`` for a run: a new local cluster when ``scheduler`` is None, else the scheduler at that
    address, waited on for a worker; ``where`` says which. ``losskit eval`` and ``losskit calibrate`` both run
    through it (calibrate's own copy lacked the wait, the quiet logs and the port warning's silence: found in
    review)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise LossInputError(f"--dask: needs dask and distributed, which are not installed: "
                             f"pip install 'losskit[dask]' ({error.name} is missing)") from None
    cluster = None
    # distributed logs a worker's failure ("Compute Failed" and its traceback) and a cancelled computation's
    # keys on stderr, beside the one-line error the failure is reported as (found in review): quiet for the run
    client_log = logging.getLogger("distributed")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        if scheduler is None:
            with warnings.catch_warnings():
                # the scheduler's HTTP server starts even without a dashboard, and warns on stderr when another
                # cluster (or Jupyter's) holds its port: it then takes another, which is all this run needs
                warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
                cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=logging.CRITICAL)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as error:
                raise LossInputError(f"--scheduler: expected the address of a running Dask scheduler, "
                                     f"got {scheduler!r}, which answered: {error}") from None
        with client:
            if not client.nthreads():  # a scheduler of no workers: the run waited for one without a word
                try:
                    client.wait_for_workers(1, timeout=WORKER_WAIT)
                except TimeoutError:
                    raise LossInputError(f"--scheduler: expected a Dask scheduler with workers, got {scheduler!r}, "
                                         f"which had none after {WORKER_WAIT:g} s") from None
            yield client, "a local Dask cluster" if scheduler is None else f"the Dask scheduler at {scheduler}"
    finally:
        if cluster is not None:
            cluster.close()
        client_log.setLevel(level)


def for_workers(layout: sources.Layout, scheduler: str | None) -> sources.Layout:
    """``layout`` with absolute paths when a scheduler's workers read it: they may run in another directory (a
    relative path met FileNotFoundError there, naming a file the client has; found in review)."""
    return layout if scheduler is None else sources.with_absolute_paths(layout)


def score(spec: Spec, layout: sources.Layout, *, batch_rows: int, scheduler: str | None = None,
          on_progress: Callable[[int, int | None], None] | None = None, make=Scorer) -> tuple[Scorer, str]:
    """Score every piece of ``layout`` on a cluster: a new local one when ``scheduler`` is None,
    else the scheduler at that address. Returns the merged scorer and a line saying where it ran.
    ``make(spec)`` builds each piece's scorer (a picklable callable; default :class:`~.scoring.Scorer`)."""
    layout = for_workers(layout, scheduler)
    with connected(scheduler) as (client, where):
        from distributed import as_completed

        threads = sum(client.nthreads().values())
        parts = sources.pieces(layout, threads * PIECES_PER_THREAD)
        futures = client.map(_score_piece, [spec] * len(parts), [layout] * len(parts), parts,
                             [batch_rows] * len(parts), [make] * len(parts), pure=False)
        total: Scorer | None = None
        for future in as_completed(futures):
            part = future.result()  # a worker's LossInputError is raised here, as it was raised there
            total = part if total is None else total.merge(part)
            if on_progress is not None:
                on_progress(total.rows, layout.rows)
        workers = len(client.nthreads())
        return total, f"{where}: {workers} worker(s), {threads} thread(s), {len(parts)} pieces"
