"""gunicorn settings: `gunicorn -c python:cds_hooks.gunicorn_conf --bind HOST:PORT 'cds_hooks.app:create_app()'`.

`lumbar-cds serve --production` runs exactly that command (`cds_hooks.ops.launch`), and so does the
Dockerfile; tests/test_dockerfile.py keeps them in step.

The app cannot see where gunicorn binds, so the secure-default rule of `lumbar-cds serve` is applied
here, in the master, before any socket is opened: without trusted issuers, a non-loopback bind
refuses to start unless LUMBAR_CDS_INSECURE=1.

gunicorn treats every module-level name that is one of its settings as a setting, so helpers and
constants here are named to match none. Every setting below can be
overridden on the gunicorn command line, or by the LUMBAR_CDS_* variable named next to it.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

# prometheus_client chooses multiprocess mode when it is first imported (the imports below pull it
# in), and the workers inherit that choice, so the directory is named before anything else happens.
_PROM_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PROM_DIR_CREATED = _PROM_ENV not in os.environ
if _PROM_DIR_CREATED:
    os.environ[_PROM_ENV] = tempfile.mkdtemp(prefix="lumbar-cds-prometheus-")

from cds_hooks.netpolicy.exposure import ExposureRefused, startup_notice  # noqa: E402
from cds_hooks.netpolicy.urls import is_loopback_host  # noqa: E402
from cds_hooks.ops.launch import INSECURE, INSECURE_ENV  # noqa: E402
from cds_hooks.security.auth import validate_auth_settings  # noqa: E402
from cds_hooks.settings.config import Settings, SettingsError, parse_flag, parse_int, read_env  # noqa: E402
from cds_hooks.store.migrate import SchemaNotCurrent, check_schema_at  # noqa: E402
from cds_hooks.telemetry.metrics import mark_process_dead  # noqa: E402

MAX_DEFAULT_WORKERS = 12


def default_workers(cores: int | None) -> int:
    """One worker per core, capped so a large host does not get dozens.

    Not the usual 2 × cores + 1: a hook call is CPU-bound, and extra workers only contend for the
    cores. On the 2-core benchmark host 5 workers gave p99 263 ms at 8 connections, 2 gave 18 ms
    with more throughput. Deployments that rely on the FHIR fallback, where workers wait on the
    EHR's server, should raise LUMBAR_CDS_WORKERS."""
    return min(cores or 1, MAX_DEFAULT_WORKERS)


# ------------------------------------------------------------------------------------ settings
# Hook calls are CPU-bound (parse, read, evaluate) with one short SQLite write: sync workers,
# one request each, are the simplest fit (see docs/performance.md for the measurements).
workers = read_env("WORKERS", parse_int, int(os.environ.get("WEB_CONCURRENCY") or default_workers(os.cpu_count())))
worker_class = os.environ.get("LUMBAR_CDS_WORKER_CLASS", "sync")
threads = read_env("THREADS", parse_int, 1)  # used by worker_class=gthread only
# A hook call's FHIR fallback has a 2 s deadline; 30 s leaves room for a slow database.
timeout = read_env("TIMEOUT", parse_int, 30)
graceful_timeout = read_env("GRACEFUL_TIMEOUT", parse_int, 30)  # SIGTERM: in-flight requests may finish
keepalive = read_env("KEEPALIVE", parse_int, 5)  # seconds; only non-sync workers keep connections open
# Recycle workers now and then (bounds any slow leak); the jitter keeps them from restarting together.
# Not often: a new worker spends ~0.5 s of CPU loading the rules, and at 2000 the load benchmark's
# tail latency rose tenfold while workers restarted mid-run.
max_requests = read_env("MAX_REQUESTS", parse_int, 20000)
max_requests_jitter = read_env("MAX_REQUESTS_JITTER", parse_int, 2000)
# Not preloaded: each worker opens its own SQLite connections, HTTP pool and threads after the fork.
preload_app = False
# The heartbeat file is touched constantly; keep it off a container's overlay disk.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None


def bind_hosts(binds: Iterable[str]) -> list[str]:
    """Hosts of gunicorn bind strings; unix sockets are local and left out, fd:// is kept as unknown."""
    hosts = []
    for bind in binds:
        if bind.startswith("unix:"):
            continue
        if bind.startswith("["):
            hosts.append(bind[1:bind.find("]")])
        elif bind.startswith("fd://"):
            hosts.append(bind)
        else:
            hosts.append(bind.rsplit(":", 1)[0] if bind.count(":") == 1 else bind)
    if os.environ.get("LISTEN_FDS"):
        hosts.append("systemd-provided socket")  # socket activation: the address is not ours to see
    return hosts


def _wipe_metrics_dir() -> None:
    """Counters from an earlier run's workers would otherwise be summed into this run's."""
    directory = Path(os.environ[_PROM_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def on_starting(server: Any) -> None:
    try:
        settings = Settings.from_env()
        validate_auth_settings(settings)
        insecure = read_env(INSECURE, parse_flag, False)
        hosts = bind_hosts(server.cfg.bind)
        notice = startup_notice(hosts, settings.auth_enabled, insecure, f"{INSECURE_ENV}=1")
        # Here, once, rather than as a traceback from every worker: the database must be migrated.
        check_schema_at(settings.store_url)
    except (SettingsError, ExposureRefused, SchemaNotCurrent) as exc:
        raise RuntimeError(f"lumbar-cds: {exc}") from None  # gunicorn prints it and exits with status 1
    except SQLAlchemyError as exc:
        raise RuntimeError(f"lumbar-cds: database: {getattr(exc, 'orig', None) or exc}") from None
    if notice:
        print(notice, file=sys.stderr, flush=True)
    if not settings.auth_enabled and settings.allowed_hosts is None and not all(map(is_loopback_host, hosts)):
        # Accepted exposure: the workers (which inherit this) serve any Host name, as `serve --insecure` does.
        os.environ["LUMBAR_CDS_ALLOWED_HOSTS"] = "*"
    _wipe_metrics_dir()


def when_ready(server: Any) -> None:
    """The sockets are bound: only now is the address worth announcing."""
    for listener in server.LISTENERS:
        if str(listener).startswith("http"):
            print(f"lumbar-cds: CDS Hooks discovery at {listener}/cds-services", file=sys.stderr, flush=True)


def post_worker_init(worker: Any) -> None:
    """The app is loaded in this worker: load the FHIR models the reader validates with too, then
    hide everything alive now from the garbage collector. A full collection walking fhir.resources'
    and pydantic's long-lived objects took 70-90 ms, which was the benchmark's p99; frozen, 2-4 ms."""
    from cds_hooks.fhir.resources import load_models
    from cds_hooks.pathway.record import READ_ELEMENTS

    load_models(READ_ELEMENTS)
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _PROM_DIR_CREATED:
        shutil.rmtree(os.environ[_PROM_ENV], ignore_errors=True)
