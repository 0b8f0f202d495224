"""Structured logs: one line per HTTP request, as JSON (default) or key=value text.

What is logged is chosen field by field, never copied from the request: a request
id, the route template, the service and hook, the hookInstance when it is a plain
token, the status, the duration, and counts (cards per rule id, skipped and
unavailable history). Never tokens, JWTs, headers, bodies, patient or resource
data. Exception records carry the type and the stack frames but not the message,
which can quote input.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
from flask import Flask, Response, g, request

REQUEST_LOGGER = "cds_hooks.request"
# A request id or hookInstance is logged only when it is a plain token: no spaces,
# quotes or newlines that could forge a log line, and too short to carry a document.
_TOKEN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # fullmatch: `$` would let a final newline by

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def safe_token(value: Any) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _frames(exc_info: ExcInfo) -> str:
    """The exception type and where it was raised, without its message."""
    frames = traceback.extract_tb(exc_info[2])
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in reversed(frames))
    return f"{exc_info[0].__name__} at {where}" if where else exc_info[0].__name__


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record), "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = _frames(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger msg key=value ...`, values JSON-encoded so a line stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        for key, value in (getattr(record, "fields", None) or {}).items():
            parts.append(f"{key}={orjson.dumps(value, default=str).decode()}")
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(f"exception={orjson.dumps(_frames(record.exc_info)).decode()}")  # type: ignore[arg-type]
        return " ".join(parts)


def configure(level: str, fmt: str) -> None:
    """Root logging for the service, unless the host (gunicorn, pytest) already set it up.
    `level` and `fmt` were checked by Settings."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    # The development server's access line carries the raw path and query string;
    # the request line below replaces it.
    logging.getLogger("werkzeug").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))


def annotate(**fields: Any) -> None:
    """Add fields to this request's log line (call from a view)."""
    g.setdefault("log_fields", {}).update(fields)


def _start() -> None:
    g.request_started = time.perf_counter()
    g.request_id = safe_token(request.headers.get("X-Request-ID")) or uuid.uuid4().hex


def _finish(response: Response) -> Response:
    # g may lack what _start set if an earlier before_request hook answered first.
    request_id = g.get("request_id") or uuid.uuid4().hex
    started = g.get("request_started", time.perf_counter())
    response.headers["X-Request-ID"] = request_id
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    fields.update(g.get("log_fields", {}))
    level = logging.ERROR if response.status_code >= 500 else logging.INFO
    logging.getLogger(REQUEST_LOGGER).log(level, "request", extra={"fields": fields})
    return response


def install(app: Flask) -> None:
    """Time every request, accept or mint its X-Request-ID, and log one line when it ends."""
    app.before_request(_start)
    app.after_request(_finish)
