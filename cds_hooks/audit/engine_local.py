"""The embedded engine: every core of one machine, with memory that does not grow with the population.

Phase 1 splits the input into pieces of at most 32 MB (smaller for a small input, so that every core has
several) and routes each piece's lines into on-disk partitions by patient (`partition`), in parallel,
largest piece first. Phase 2 judges the partitions in parallel, one patient at a time: a worker holds one
partition's raw lines (sized to about 32 MB, so more patients means more partitions, not bigger ones)
plus one patient's parsed resources. Workers are processes (the judge is Python: threads would share one
core), forked after the rules and the R4B models are loaded and frozen out of the garbage collector's
sight, so they share them; each returns a `Tally` the parent adds up.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds_hooks.audit.judge import PatientJudge
from cds_hooks.audit.ndjson import BulkInput, InputFile, chunks
from cds_hooks.audit.partition import PartitionFiles, ScanStats, partition_files, read_partition, scan_piece
from cds_hooks.audit.progress import Progress
from cds_hooks.audit.sieve import Sieve
from cds_hooks.audit.tally import Tally

PIECE_BYTES = 32 * 1024 * 1024  # at most; smaller for a small input, so that every core gets pieces
MIN_PIECE_BYTES = 4 * 1024 * 1024
PARTITION_BYTES = 32 * 1024 * 1024
GZIP_RATIO = 8  # a gzip file's NDJSON is about this many times its size, for sizing partitions
GC_YOUNG = 70_000  # new container objects between young collections (Python's default: 700)


@dataclass
class EngineRun:
    tally: Tally
    scan: ScanStats
    engine: dict[str, Any]


# Set in the parent before the workers fork; read by them.
_JUDGE: PatientJudge | None = None
_DONE: Any = None
_CATALOGUES: dict[str, dict[str, dict[str, Any]]] = {}
_ROUTED: PartitionFiles | None = None  # this worker's partition files, across the pieces it routes


def needed(bulk: BulkInput, judge: PatientJudge) -> BulkInput:
    """Files the pathway can use: of a type it reads (or of several types), or a shared catalogue."""
    from cds_hooks.audit.partition import CATALOGUE_TYPES

    wanted = judge.pathway.read_types | CATALOGUE_TYPES
    keep = [f for f in bulk.files if f.resource_type is None or f.resource_type in wanted]
    return BulkInput(keep, bulk.transaction_time, bulk.error_files, bulk.remote, bulk.requires_token)


def _ndjson_bytes(bulk: BulkInput) -> int:
    return sum(f.size * (GZIP_RATIO if f.gzipped else 1) for f in bulk.files)


def partitions_for(bulk: BulkInput, workers: int) -> int:
    # Several per worker, so that no core waits long for the last one.
    return max(4 * workers, math.ceil(_ndjson_bytes(bulk) / PARTITION_BYTES))


def pieces_for(bulk: BulkInput, workers: int) -> list[tuple[InputFile, int, int]]:
    """The input in pieces of at most PIECE_BYTES, about eight per worker for a small input, largest
    first: each worker takes the next piece when done, so the cores finish close together."""
    target = min(PIECE_BYTES, max(MIN_PIECE_BYTES, _ndjson_bytes(bulk) // (8 * workers)))
    return sorted(chunks(bulk.files, target), key=lambda p: p[2] - p[1], reverse=True)


def run_local(bulk: BulkInput, judge: PatientJudge, workers: int | None = None, workdir: Path | None = None,
              progress: Progress | None = None) -> EngineRun:
    global _JUDGE, _DONE
    progress = progress or Progress(False)
    workers = workers or os.cpu_count() or 1
    bulk = needed(bulk, judge)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="lumbar-audit-", dir=workdir))
    parts = partitions_for(bulk, workers)
    _JUDGE, _DONE = judge, multiprocessing.get_context("fork").Value("q", 0)
    # The rules and models are long-lived: out of the collector's sight, a full collection in a worker
    # no longer walks them (as the service's workers do after start-up). A patient's parsed JSON is
    # acyclic and freed by reference counting when the next patient starts, so a young collection
    # every 700 new objects (the default) only walks it in vain: the workers collect 100 times less often.
    thresholds = gc.get_threshold()
    judge.pathway.load_models()
    # Frozen without a full collection first: after the rules load it freed nothing and took 60-80 ms,
    # about a twentieth of a 1,000-patient audit (at worst a few cycles stay frozen until the audit ends).
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *thresholds[1:])
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            pieces = pieces_for(bulk, workers)
            progress.phase("reading", bulk.total_bytes, "B", scale=True)
            scan = ScanStats()
            read_files: set[Path] = set()

            def scanned(future: Future[ScanStats], piece: Any) -> None:
                scan.merge(future.result())
                read_files.add(piece[0].path)
                progress.update(piece[2] - piece[1], files=f"{len(read_files)}/{len(bulk.files)}")

            _gather({pool.submit(_route_piece, p, parts, str(scratch), judge.sieve): p for p in pieces}, scanned)
            catalogue_file = scratch / "catalogue.json"
            catalogue_file.write_bytes(orjson.dumps(scan.catalogue))
            scanned_at = time.perf_counter()
            progress.phase("judging", scan.patients or None, " patients")
            tally = Tally(sample_limit=judge.options.samples)
            last = [0]

            def judged(future: Future[Tally] | None, _: Any) -> None:
                if future is not None:
                    tally.merge(future.result())
                done = _DONE.value
                progress.update(done - last[0])
                last[0] = done

            _gather({pool.submit(_judge_partition, p, str(scratch), str(catalogue_file)): p for p in range(parts)},
                    judged, lambda: judged(None, None))
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        shutil.rmtree(scratch, ignore_errors=True)
    scan.count_into(tally)
    finished = time.perf_counter()
    return EngineRun(tally, scan, {
        "name": "local", "workers": workers, "partitions": parts, "pieces": len(pieces),
        "seconds": round(finished - started, 3), "readSeconds": round(scanned_at - started, 3),
    })


def _gather(pending: dict[Future[Any], Any], on_done: Callable[[Future[Any], Any], None],
            tick: Callable[[], None] | None = None) -> None:
    """Call `on_done` as each task finishes (and `tick` every half second)."""
    while pending:
        done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            on_done(future, pending.pop(future))
        if tick is not None:
            tick()


def _route_piece(piece: tuple[InputFile, int, int], parts: int, scratch: str, sieve: Sieve) -> ScanStats:
    """Route a piece into this worker's partition files: one file per worker and partition, whichever
    pieces it routes."""
    global _ROUTED
    if _ROUTED is None or _ROUTED.out_dir != Path(scratch):
        if _ROUTED is not None:  # another audit's, in a process that routed before
            _ROUTED.close()
        _ROUTED = PartitionFiles(Path(scratch), str(os.getpid()))
    return scan_piece(piece, parts, _ROUTED, sieve)


def _catalogue(path: str) -> dict[str, dict[str, Any]]:
    if path not in _CATALOGUES:
        _CATALOGUES.clear()
        _CATALOGUES[path] = orjson.loads(Path(path).read_bytes())
    return _CATALOGUES[path]


def _judge_partition(partition: int, scratch: str, catalogue_path: str) -> Tally:
    assert _JUDGE is not None
    if _ROUTED is not None:  # routing is over: files this worker wrote are freed once read and unlinked
        _ROUTED.close()
    files = partition_files(Path(scratch), partition)
    patients = read_partition(files)
    catalogue = _catalogue(catalogue_path)
    tally = Tally(sample_limit=_JUDGE.options.samples)
    pending = 0
    for patient_id, lines in patients.items():
        _JUDGE(patient_id, lines, catalogue, tally)
        pending += 1
        if pending == 20:
            with _DONE.get_lock():
                _DONE.value += pending
            pending = 0
    with _DONE.get_lock():
        _DONE.value += pending
    for path in files:
        path.unlink(missing_ok=True)
    return tally
