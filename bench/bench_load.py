"""Load benchmark: the production gunicorn configuration on loopback, driven by wrk.

Starts gunicorn with `cds_hooks.ops.gunicorn_conf` (temporary data directory, authentication off on
loopback), then POSTs one order-select request whose prefetch holds 100 resources
(`bench_service.build_request`) for a fixed time at each concurrency, and prints throughput and
p50/p95/p99 latency as reported by `wrk --latency`. Nothing here asserts a time.

    python bench/bench_load.py [--duration 10] [--connections 1 8 32] [--workers N] [--worker-class sync]

wrk comes from Debian: `apt-get install -y wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import build_request
from bench.server import Gunicorn, free_port

SERVICE = "/cds-services/lumbar-pathway-order-select"
# wrk's Lua: POST the prepared body; at the end print one JSON line with the numbers we report.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50": %%d, "p95": %%d, "p99": %%d, "max": %%d, ' ..
    '"non2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict[str, Any]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "--timeout", "5s",
         "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per concurrency level")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--workers", help="LUMBAR_CDS_WORKERS (default: the configuration's)")
    parser.add_argument("--worker-class", help="LUMBAR_CDS_WORKER_CLASS: sync or gthread")
    parser.add_argument("--threads", help="LUMBAR_CDS_THREADS (gthread)")
    parser.add_argument("--log-level", default="INFO", help="LUMBAR_CDS_LOG_LEVEL (INFO logs one line per call)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_load: wrk is not installed. On Debian or Ubuntu: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    env = {"LUMBAR_CDS_LOG_LEVEL": args.log_level}
    for name, value in (("WORKERS", args.workers), ("WORKER_CLASS", args.worker_class), ("THREADS", args.threads)):
        if value:
            env[f"LUMBAR_CDS_{name}"] = value
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "request.json"
        body.write_bytes(build_request(args.resources))
        script = Path(tmp) / "post.lua"
        script.write_text(LUA % {"body": body})
        server = Gunicorn(Path(tmp) / "data", free_port(), env)
        server.start()
        try:
            url = server.base + SERVICE
            check = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(check, timeout=10) as response:
                cards = json.loads(response.read())["cards"]
            workers = len(server.worker_pids())
            print(f"gunicorn on 127.0.0.1: {workers} workers, class {args.worker_class or 'sync'}"
                  f"{', threads ' + args.threads if args.threads else ''}; log level {args.log_level}; "
                  f"{os.cpu_count()} cores (shared with wrk); body {body.stat().st_size // 1024} kB, "
                  f"{args.resources} resources, {len(cards)} card(s) per answer; {args.duration} s per level")
            print("| connections | requests/s | p50 ms | p95 ms | p99 ms | max ms | non-2xx | socket errors |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for connections in args.connections:
                r = run_wrk(url, script, connections, args.duration)
                rate = r["requests"] / (r["duration_us"] / 1e6)
                print(f"| {connections} | {rate:,.0f} | {r['p50'] / 1000:.1f} | {r['p95'] / 1000:.1f} | "
                      f"{r['p99'] / 1000:.1f} | {r['max'] / 1000:.1f} | {r['non2xx']} | {r['socket_errors']} |",
                      flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
