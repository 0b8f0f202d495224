"""Benchmark: the retrospective audit over a synthetic Bulk export, against the floor of parsing it.

For each population size (default 1,000 and 10,000 patients of about 200 resources each, written once by
`lumbar-cds synth` into bench/results/), each run in a fresh process so peak memory is its own:
  - the floor: `orjson.loads` of every NDJSON line, on one core;
  - the local engine on all cores: patients/s, resources/s, seconds, peak RSS (parent and workers), and the
    ratio to the floor;
  - both again in CPU seconds (all processes), with the load average before and after: on a shared machine
    the wall-clock figures measure the other jobs too, the CPU seconds much less (patients per core-second
    times the cores is what the engine reaches on cores of its own, if it keeps them all busy);
  - optionally the Spark engine in local mode (`--spark-sizes`).
The local engine runs `--repeat` times (default 3), each right after its own floor: the fastest run is
reported with its floor, and the median ratio of the pairs (on a shared machine a slower run measures the
other jobs too, and the machine's speed drifts between minutes). Prints every run, the figures and a
JSON line; nothing here asserts a time (docs/performance.md has the results).

    python bench/bench_audit.py [--sizes 1000,10000] [--spark-sizes 1000] [--years 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PERIOD = (date(2025, 1, 1), date(2025, 12, 31))


def population(patients: int, years: int) -> Path:
    from cds_hooks.audit.synth import generate
    from cds_hooks.pathway.rules import load_rules

    out = RESULTS / f"audit-{patients}-{years}y"
    if not (out / "manifest.json").is_file():
        generate(load_rules(ROOT / "rules"), patients, out, seed=2026, years=years)
    return out


def floor(source: Path) -> tuple[float, float, int]:
    """Seconds (wall and CPU) to orjson.loads every line on one core, and the number of lines."""
    started, cpu, lines = time.perf_counter(), time.process_time(), 0
    for path in sorted(source.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                orjson.loads(line)
                lines += 1
    return time.perf_counter() - started, time.process_time() - cpu, lines


def cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and its finished children: on a shared machine
    the time the work took, whatever else ran beside it."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(children, 1)


def one(source: Path, engine: str) -> dict[str, object]:
    """One audit in this process (run by the parent as a subprocess)."""
    from cds_hooks.audit.adapter import LivePathway
    from cds_hooks.audit.audit_rules import load_measures
    from cds_hooks.audit.judge import AuditOptions, PatientJudge
    from cds_hooks.audit.ndjson import discover
    from cds_hooks.audit.run import audit_service
    from cds_hooks.pathway.rules import load_rules

    rules = load_rules(ROOT / "rules")
    judge = PatientJudge(LivePathway(rules, audit_service(rules, None)), load_measures(rules),
                         AuditOptions(period=PERIOD))
    bulk = discover(source)
    started, cpu = time.perf_counter(), cpu_seconds()
    if engine == "spark":
        from cds_hooks.audit.engine_spark import run_spark

        run = run_spark(bulk, judge, "local[*]")
    else:
        from cds_hooks.audit.engine_local import run_local

        run = run_local(bulk, judge)
    seconds = time.perf_counter() - started
    # Spark's JVM and the Python workers it starts are not waited for by this process: no CPU figure.
    cpu = None if engine == "spark" else round(cpu_seconds() - cpu, 2)
    own, children = peak_rss_mib()
    patients = run.tally.counts[("data", "patients")]
    return {"engine": engine, "seconds": round(seconds, 2), "cpuSeconds": cpu, "patients": patients,
            "patientsPerSecond": round(patients / seconds, 1), "linesRouted": run.scan.lines,
            "peakRssParentMiB": own, "peakRssWorkerMiB": children, "orders": run.tally.counts[
                ("orders", "all", "all", "orders")], "cores": os.cpu_count()}


def cpu_figures(result: dict[str, object], floor_cpu: float) -> str:
    if not result["cpuSeconds"]:
        return "CPU not measured"
    return (f"CPU {result['cpuSeconds']} s ({result['patientsPerCoreSecond']} patients per core-second), "
            f"floor CPU {floor_cpu:.2f} s, CPU ratio {result['cpuRatioToFloor']}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--spark-sizes", default="", help="sizes to run with the Spark engine too")
    parser.add_argument("--years", type=int, default=4, help="years of history per patient (4: about 200 resources)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the local engine, each after a floor of its own; the fastest is reported "
                             "with its floor, beside the median ratio")
    parser.add_argument("--one", nargs=2, metavar=("SOURCE", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.one[0]), args.one[1])))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    spark_sizes = {int(s) for s in args.spark_sizes.split(",") if s}
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        source = population(size, args.years)
        load = os.getloadavg()[0]
        for engine in ("local", *(["spark"] if size in spark_sizes else [])):
            # The floor right before each run: the machine's speed drifts with other jobs, so each run is
            # set against its own floor, and the median of those ratios is reported.
            command = [sys.executable, __file__, "--one", str(source), engine]
            pairs = [(floor(source), json.loads(subprocess.run(command, check=True, capture_output=True, text=True)
                                                .stdout.strip().splitlines()[-1]))
                     for _ in range(args.repeat if engine == "local" else 1)]
            every = ", ".join(f"{f[0]:.2f} s, {r['seconds']} s ({r['cpuSeconds']} CPU s)" for f, r in pairs)
            print(f"{engine:>5} {size:>6} patients, every run (floor, engine): {every}", flush=True)
            (floor_seconds, floor_cpu, lines), result = min(pairs, key=lambda p: p[1]["seconds"])
            ratios = sorted(r["seconds"] / f[0] for f, r in pairs)
            result |= {
                "runs": len(pairs), "size": size, "floorSeconds": round(floor_seconds, 2),
                "floorCpuSeconds": round(floor_cpu, 2), "resourcesPerPatient": round(lines / size, 1),
                "medianRatioToFloor": round(ratios[len(ratios) // 2], 2),
                "loadBefore": round(load, 2), "loadAfter": round(os.getloadavg()[0], 2)}
            result["ratioToFloor"] = round(result["seconds"] / floor_seconds, 2)
            # The same work in CPU seconds, which other jobs on a shared machine do not inflate; spread over
            # the cores without idling it gives the rate the engine can reach on them when they are its own.
            if result["cpuSeconds"]:
                result["cpuRatioToFloor"] = round(result["cpuSeconds"] / floor_cpu, 2)
                result["patientsPerCoreSecond"] = round(size / result["cpuSeconds"], 1)
            # Every resource in the export counts, including the types the pathway never reads (skipped whole).
            result["resourcesPerSecond"] = round(lines / result["seconds"])
            results.append(result)
            print(f"{engine:>5} {size:>6} patients x {result['resourcesPerPatient']:.0f} resources: "
                  f"{result['seconds']:.1f} s, {result['patientsPerSecond']:.0f} patients/s, "
                  f"{result['resourcesPerSecond']:.0f} resources/s, peak RSS parent {result['peakRssParentMiB']} MiB "
                  f"worker {result['peakRssWorkerMiB']} MiB; floor (orjson.loads, one core) {floor_seconds:.1f} s, "
                  f"ratio {result['ratioToFloor']}x (median of the runs {result['medianRatioToFloor']}x); "
                  f"{cpu_figures(result, floor_cpu)}; load average "
                  f"{result['loadBefore']} before, {result['loadAfter']} after", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
