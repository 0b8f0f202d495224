"""Fault benchmark: acknowledged feedback survives a SIGKILLed worker and a full restart.

Starts gunicorn with the production configuration on loopback and runs several client threads
that POST feedback, each item carrying a unique card uuid and a unique marker in userComment.
During the run it SIGKILLs one worker, lets the master replace it, then restarts the whole
service (SIGTERM to the master, which lets in-flight requests finish, then a fresh start on the
same port and database) while the clients keep sending. Afterwards it reads the database directly
and checks that every POST that got a 2xx is stored, and that the only failed requests are the one
in flight on the killed worker (a sync worker serves one request at a time) and those refused
while the service was down for the restart (never acknowledged, so a client retries them).

    python bench/bench_fault.py [--clients 6] [--seconds 3] [--database-url URL | --postgres]

`--database-url` selects the database (default: SQLite in a temporary data directory). Another
URL is passed to the server as LUMBAR_CDS_DATABASE_URL and read back through the store;
`--postgres` starts a throwaway PostgreSQL server (Debian's binaries) and uses it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import Gunicorn, free_port
from cds_hooks.store.database import safe_url
from cds_hooks.store.repository import Store

FEEDBACK = "/cds-services/lumbar-pathway-order-select/feedback"


@dataclass
class Attempt:
    marker: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer
    error: str = ""


@dataclass
class Log:
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)


def _post(base: str, marker: str) -> tuple[int | None, str]:
    body = orjson.dumps({"feedback": [{
        "card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
        "overrideReason": {"userComment": marker},
    }]})
    request = urllib.request.Request(base + FEEDBACK, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None)
        return None, type(reason or exc).__name__


def _client(base: str, name: str, stop: threading.Event, log: Log) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        marker = f"fault-bench {name}-{seq}"
        started = time.monotonic()
        status, error = _post(base, marker)
        log.add(Attempt(marker, started, time.monotonic(), status, error))
        if status is None:
            time.sleep(0.02)  # the service is down: do not spin


def _stored_markers(database_url: str | None, data_dir: Path) -> set[str]:
    store = Store(database_url or data_dir / "lumbar-cds.sqlite3")
    return {r["user_comment"] for r in store.feedback_rows()
            if (r["user_comment"] or "").startswith("fault-bench ")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0, help="load before the kill, and between phases")
    parser.add_argument("--workers", default="3")
    parser.add_argument("--database-url", help="default: SQLite in a temporary data directory")
    parser.add_argument("--postgres", action="store_true",
                        help="run against a throwaway PostgreSQL server (Debian's binaries, as in the tests)")
    args = parser.parse_args()
    if args.postgres:
        from tests.postgres import PostgresServer

        postgres = PostgresServer()
        postgres.start()
        try:
            args.database_url = postgres.create_database()
            return _run(args)
        finally:
            postgres.stop()
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    env = {"LUMBAR_CDS_WORKERS": args.workers, "LUMBAR_CDS_LOG_LEVEL": "WARNING"}
    if args.database_url:
        env["LUMBAR_CDS_DATABASE_URL"] = args.database_url
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        server = Gunicorn(data_dir, port, env)
        server.start()
        log, stop = Log(), threading.Event()
        threads = [threading.Thread(target=_client, args=(server.base, f"c{i}", stop, log), daemon=True)
                   for i in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        victim = server.worker_pids()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(args.seconds)  # the master notices and forks a replacement
        replaced = victim not in server.worker_pids()
        term_at = time.monotonic()
        stop_status = server.stop()
        server = Gunicorn(data_dir, port, env)
        server.start()
        back_at = time.monotonic()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        server.stop()
        stored = _stored_markers(args.database_url, data_dir)

    attempts = log.attempts
    acknowledged = [a for a in attempts if a.status is not None and 200 <= a.status < 300]
    failed = [a for a in attempts if a not in acknowledged]
    at_kill = [a for a in failed if a.started <= killed_at <= a.ended]
    in_restart = [a for a in failed if a.ended >= term_at and a.started <= back_at]
    other = [a for a in failed if a not in at_kill and a not in in_restart]
    lost = [a.marker for a in acknowledged if a.marker not in stored]
    print(f"{args.clients} clients, {args.workers} sync workers, database "
          f"{safe_url(args.database_url) if args.database_url else 'SQLite (temporary data dir)'}")
    print(f"feedback POSTs: {len(attempts)}; acknowledged (2xx): {len(acknowledged)}; in the database afterwards: "
          f"{len(stored)}; acknowledged but missing: {len(lost)}")
    print(f"worker {victim} SIGKILLed and replaced: {replaced}; master stopped by SIGTERM with status {stop_status}; "
          f"service down for {back_at - term_at:.1f} s")
    print(f"failed requests: {len(failed)}: in flight on the killed worker {len(at_kill)} "
          f"({', '.join(sorted({a.error or str(a.status) for a in at_kill})) or '-'}); during the restart "
          f"{len(in_restart)} ({', '.join(sorted({a.error or str(a.status) for a in in_restart})) or '-'}); "
          f"other {len(other)}")
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged feedback items are not in the database, e.g. {lost[:3]}")
    if len(at_kill) > 1:  # a sync worker serves one request at a time
        problems.append(f"{len(at_kill)} requests failed at the kill; at most 1 was in flight on that worker")
    if other:
        problems.append(f"{len(other)} requests failed outside the kill and the restart: "
                        f"{sorted({a.error or str(a.status) for a in other})}")
    if not replaced:
        problems.append("the killed worker was not replaced")
    if not acknowledged or not any(a.started > back_at for a in acknowledged):
        problems.append("no feedback was acknowledged after the restart")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("OK: every acknowledged feedback item is stored; failures limited to the killed worker and the restart")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
