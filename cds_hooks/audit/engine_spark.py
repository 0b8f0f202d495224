"""The Apache Spark engine: the same per-patient judge, run on a Spark cluster (or `local[*]`).

Spark reads the NDJSON (plain or gzip) with `textFile`, passes over what the local engine's `Sieve` does,
routes each other line to its patient with the same `partition.route`, collects the small catalogue of
shared resources on the driver and broadcasts it with the judge (rules included, pickled: the executors
need the package, not the rules directory), groups lines by patient, judges each patient, and adds the
partitions' tallies. On a cluster the executors need this package installed (a wheel, see docs/audit.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from cds_hooks.audit.engine_local import EngineRun, needed
from cds_hooks.audit.judge import PatientJudge
from cds_hooks.audit.ndjson import BulkInput
from cds_hooks.audit.partition import CATALOGUE_TYPES, ScanStats, catalogue_entry, route
from cds_hooks.audit.sieve import Sieve
from cds_hooks.audit.tally import Tally

UNREADABLE = "\x00unreadable"
UNASKED = "\x00unasked"


def _route(resource_type: str | None, text: str, sieve: Sieve) -> tuple[str | None, bytes, Any]:
    line = text.strip().encode()
    if sieve.sifts(resource_type) and (unasked := sieve.passes_over(line)) is not None:
        return UNASKED, b"", unasked
    try:
        pid, parsed = route(line, resource_type)
    except ValueError:
        return UNREADABLE, b"", None
    if pid is None and parsed is not None and parsed.get("resourceType") in CATALOGUE_TYPES \
            and isinstance(parsed.get("id"), str):
        return None, b"", (f"{parsed['resourceType']}/{parsed['id']}", catalogue_entry(parsed))
    return pid, line, None


def _judge_partition(rows: Iterable[tuple[str, Iterable[bytes]]], judge: PatientJudge,
                     catalogue: dict[str, Any]) -> Iterator[Tally]:
    tally = Tally(sample_limit=judge.options.samples)
    for patient_id, lines in rows:
        judge(patient_id, list(lines), catalogue, tally)
    yield tally


def session(master: str) -> Any:
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("lumbar-cds audit")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local"):
        # Stay on loopback (local mode needs no network interface), with this interpreter's packages.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.pyspark.python", sys.executable))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_spark(bulk: BulkInput, judge: PatientJudge, master: str = "local[*]") -> EngineRun:
    started = time.perf_counter()
    spark = session(master)
    sc = spark.sparkContext
    files = needed(bulk, judge).files
    lines, unreadable, unattributed = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0)
    sieve = judge.sieve
    unasked = {rtype: sc.accumulator(0) for rtype, _ in sieve.probes.values()}

    def counted(resource_type: str | None, text: str) -> tuple[str | None, bytes, Any]:
        row = _route(resource_type, text, sieve)
        lines.add(1)
        if row[0] == UNREADABLE:
            unreadable.add(1)
        elif row[0] == UNASKED:
            unasked[row[2]].add(1)
        elif row[0] is None and row[2] is None:  # neither a patient's nor a shared resource
            unattributed.add(1)
        return row

    routed = sc.union([sc.textFile(str(f.path)).filter(lambda t: bool(t.strip()))
                       .map(lambda t, rt=f.resource_type: counted(rt, t)) for f in files])
    routed.persist()  # read once: the catalogue pass fills it, the judging pass reuses it
    catalogue = dict(routed.filter(lambda r: r[0] is None and r[2] is not None).map(lambda r: r[2]).collect())
    shared_judge, shared_catalogue = sc.broadcast(judge), sc.broadcast(catalogue)
    partitions = max(sc.defaultParallelism * 2, routed.getNumPartitions())
    tallies = (routed.filter(lambda r: r[0] is not None and r[0] not in (UNREADABLE, UNASKED))
               .map(lambda r: (r[0], r[1])).groupByKey(partitions)
               .mapPartitions(lambda rows: _judge_partition(rows, shared_judge.value, shared_catalogue.value)))
    tally = tallies.treeReduce(lambda a, b: a.merge(b)) if partitions else Tally()
    routed.unpersist()
    scan = ScanStats(lines=lines.value, unreadable=unreadable.value, unattributed=unattributed.value,
                     catalogue=catalogue,
                     patients=tally.counts.get(("data", "patients"), 0),
                     unasked=Counter({rtype: n.value for rtype, n in unasked.items() if n.value}))
    scan.count_into(tally)
    engine = {"name": "spark", "master": master, "partitions": partitions, "sparkVersion": spark.version,
              "seconds": round(time.perf_counter() - started, 3)}
    return EngineRun(tally, scan, engine)
