"""Fetch what prefetch lacks from the EHR's FHIR server, within one deadline.

CDS Hooks 2.0 expects a service to run a prefetch template against
`fhirServer` itself when the client left the key out. This module does that
and nothing else: it never decides what is required (the rules do, in
`service`), and it never raises for a server's failure; each key comes back
as data or as a `FetchFailure` saying why.

Server-side request forgery is the main risk of following a URL the caller
chose, so a server must pass `server_allowed` before any connection is made,
paging `next` links must stay on that server, and redirects are never
followed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import orjson

from cds_hooks.netpolicy.urls import same_server, server_allowed
from cds_hooks.settings.config import FetchLimits
from cds_hooks.telemetry import metrics

log = logging.getLogger("cds_hooks.fhir.fetch")
# httpx logs every request URL at INFO (and httpcore the headers at DEBUG): the
# URL holds the patient id and the headers the token, so they stay quiet.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
# Token values go into URL paths and queries: FHIR ids and references only.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9\-.]{1,64}(/[A-Za-z0-9\-.]{1,64})?$")
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class FetchFailure:
    """Why a key could not be had. `reason` is a code the cards and the 412
    message explain; `detail` is safe to show (no URL, id or token)."""

    reason: str  # timeout | refused | server-error | bad-response | unreachable | truncated
    detail: str = ""


@dataclass
class Fetched:
    """The outcome of one hook's fetches: data by key, failures by key, and
    partial results (truncated by the caps) that were still read."""

    data: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, FetchFailure] = field(default_factory=dict)
    truncated: dict[str, FetchFailure] = field(default_factory=dict)


# --------------------------------------------------------------------------- allow-list


# --------------------------------------------------------------------------- templates


def render_template(template: str, tokens: Mapping[str, str | None]) -> str | None:
    """The template with its `{{...}}` tokens replaced, or None when a token
    has no value (the key cannot be fetched) or a value is not a plain FHIR id
    or reference (it could steer the URL elsewhere)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        v = tokens.get(match.group(1))
        if v is None or not _SAFE_VALUE.match(v) or any(part.strip(".") == "" for part in v.split("/")):
            missing = True
            return ""
        return quote(v, safe="/")

    rendered = _TOKEN.sub(value, template)
    return None if missing else rendered


def template_resource_type(template: str) -> str:
    """`Condition?patient=...` → `Condition`; `Patient/{{...}}` → `Patient`."""
    return re.split(r"[/?]", template, maxsplit=1)[0]


def resource_type_of(template: str) -> str:
    """`Condition?patient=...` → `Condition search`; `Patient/{{...}}` → `Patient read`.
    Used in logs instead of the URL, which holds patient ids."""
    kind = "search" if "?" in template or "/" not in template else "read"
    return f"{template_resource_type(template)} {kind}"


# --------------------------------------------------------------------------- fetching


class _Failed(Exception):
    def __init__(self, failure: FetchFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class FhirFetcher:
    """One pooled HTTP client and thread pool for the app's lifetime; one
    `fetch` call per hook. Thread-safe."""

    def __init__(self, limits: FetchLimits, allowlist: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.allowlist = allowlist
        # follow_redirects=False: a redirect could point anywhere.
        self._client = httpx.Client(
            follow_redirects=False,
            headers={"Accept": FHIR_JSON},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def allowed(self, server: str) -> bool:
        return server_allowed(server, self.allowlist)

    def fetch(
        self, server: str, queries: Mapping[str, str], token: str | None, deadline: float
    ) -> Fetched:
        """Run each key's relative query against `server` concurrently.

        `deadline` is a `time.monotonic()` instant: whatever has not answered
        by then is a timeout failure. The caller must have checked `allowed`.
        """
        if not self.allowed(server):  # defence in depth; the service checks first
            raise ValueError("FHIR server not on the allow-list")
        base = server.rstrip("/") + "/"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        futures: dict[Future[tuple[Any, FetchFailure | None]], str] = {
            self._pool.submit(self._run, base, key, query, headers, deadline): key
            for key, query in queries.items()
        }
        result = Fetched()
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                key = futures[future]
                data, partial = future.result()
                if isinstance(data, FetchFailure):
                    result.failures[key] = data
                    continue
                result.data[key] = data
                if partial is not None:
                    result.truncated[key] = partial
        for future in pending:  # still running at the deadline: abandon, report
            future.cancel()
            result.failures[futures[future]] = FetchFailure("timeout", f"{self.limits.timeout:g} s")
        return result

    def _run(
        self, base: str, key: str, query: str, headers: dict[str, str], deadline: float
    ) -> tuple[Any, FetchFailure | None]:
        kind = resource_type_of(query)
        started = time.perf_counter()
        progress = {"pages": 0, "status": "-"}
        try:
            result = self._search_or_read(base, query, headers, deadline, progress)
        except _Failed as exc:
            _log(kind, progress["status"], started, progress["pages"], 0, exc.failure)
            return exc.failure, None
        except (TypeError, ValueError, AttributeError) as exc:
            # Whatever shape a remote server sends, it is that server's bad answer, never our 500.
            failure = FetchFailure("bad-response", type(exc).__name__)
            _log(kind, progress["status"], started, progress["pages"], 0, failure)
            return failure, None
        data, partial, count = result
        _log(kind, progress["status"], started, progress["pages"], count)
        return data, partial

    def _search_or_read(
        self, base: str, query: str, headers: dict[str, str], deadline: float, progress: dict[str, Any]
    ) -> tuple[Any, FetchFailure | None, int]:
        """The resource (a read), or every page of a search as one searchset Bundle."""
        body, progress["status"] = self._get(base + query, headers, deadline, read="?" not in query)
        progress["pages"] = 1
        if body is None or body.get("resourceType") != "Bundle":
            return body, None, 0 if body is None else 1
        entries = _entries(body)
        partial = None
        while (next_url := _next_link(body)) is not None:
            if progress["pages"] >= self.limits.max_pages or len(entries) >= self.limits.max_resources:
                partial = FetchFailure("truncated", str(len(entries)))
                break
            url = urljoin(base, next_url)
            if not same_server(url, base):  # a next link must not lead elsewhere
                raise _Failed(FetchFailure("bad-response", "paging link to another server"))
            body, progress["status"] = self._get(url, headers, deadline, read=False)
            progress["pages"] += 1
            if body is None or body.get("resourceType") != "Bundle":
                raise _Failed(FetchFailure("bad-response", "a result page is not a Bundle"))
            entries.extend(_entries(body))
        if len(entries) > self.limits.max_resources:
            partial = FetchFailure("truncated", str(self.limits.max_resources))
            entries = entries[: self.limits.max_resources]
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}, partial, len(entries)

    def _get(self, url: str, headers: dict[str, str], deadline: float, read: bool) -> tuple[Any, int]:
        """GET one URL; JSON or None (404 on a read); `_Failed` for anything else.

        The body is streamed so that both the deadline and a size cap hold while it arrives:
        httpx's timeout bounds each network step, not a server that trickles bytes."""
        timeout = FetchFailure("timeout", f"{self.limits.timeout:g} s")
        if deadline - time.monotonic() <= 0:
            raise _Failed(timeout)
        try:
            with self._client.stream("GET", url, headers=headers, timeout=deadline - time.monotonic()) as response:
                status = response.status_code
                if status in (401, 403):
                    raise _Failed(FetchFailure("refused", f"HTTP {status}"))
                if status == 404 and read:
                    return None, status  # a read that found nothing: "no data", as prefetch null
                if 300 <= status < 400:
                    raise _Failed(FetchFailure("bad-response", f"HTTP {status} redirect, not followed"))
                if status != 200:
                    raise _Failed(FetchFailure("server-error", f"HTTP {status}"))
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.limits.max_bytes:
                        raise _Failed(FetchFailure("bad-response", f"answer over {self.limits.max_bytes} bytes"))
                    if time.monotonic() > deadline:
                        raise _Failed(timeout)
                    chunks.append(chunk)
        except httpx.TimeoutException:
            raise _Failed(timeout) from None
        except httpx.HTTPError as exc:
            # The exception text can hold the URL (patient id): keep only its kind.
            raise _Failed(FetchFailure("unreachable", type(exc).__name__)) from None
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise _Failed(FetchFailure("bad-response", "not JSON")) from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _Failed(FetchFailure("bad-response", "not a FHIR resource"))
        if body["resourceType"] == "OperationOutcome":
            raise _Failed(FetchFailure("server-error", "OperationOutcome"))
        return body, status


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise _Failed(FetchFailure("bad-response", "Bundle.entry is not an array"))
    return [e for e in entries or () if isinstance(e, dict)]


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _log(
    kind: str, status: int | str, started: float, pages: int, count: int, failure: FetchFailure | None = None
) -> None:
    # What was asked and how it went; never the URL (its query holds patient ids) or the token.
    resource_type = kind.split(" ", 1)[0]  # from the rules' prefetch template, so a bounded set
    metrics.FHIR_QUERIES.labels(resource_type).inc()
    if failure:
        metrics.FHIR_FAILURES.labels(resource_type, failure.reason).inc()
    log.info(
        "fhir query=%r status=%s ms=%.1f pages=%d results=%d%s",
        kind, status, (time.perf_counter() - started) * 1000, pages, count,
        f" failure={failure.reason}" if failure else "",
    )
