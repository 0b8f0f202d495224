"""Fetch what prefetch lacks from the EHR's FHIR server, within one deadline and one budget.

CDS Hooks 2.0 expects a service to run a prefetch template against
`fhirServer` itself when the client left the key out. This module does that
and nothing else: it never decides what is required (the rules do, in
`service`), and it never raises for a server's failure; each key comes back
as data or as a `FetchFailure` saying why.

Server-side request forgery is the main risk of following a URL the caller
chose, so a server must pass `server_allowed` before any connection is made,
every URL is built and checked in normal form (`normalise_url`), paging `next`
links must stay on that server and below its path, and redirects are never
followed.

An allowed server can still be broken or hostile, so the work on its answers is bounded:
- one deadline per hook call, checked before each request, on every chunk, before parsing and
  between pages. `fetch` returns when every key has its answer or at the deadline, whichever is first,
  so a thread still reading after the answer is past the deadline: it stops at its next chunk and
  never parses;
- one budget per hook call, shared by its concurrent fetches: bytes read (`max_bytes`, checked
  against Content-Length before reading, then on every chunk), and JSON values, counted on every
  chunk as it arrives as the bytes `{ [ , :` (an upper bound on the values the parser would build,
  so nothing is parsed that could build more objects than `max_json_values`), and resources from
  searches (`max_total_resources`);
- per search, pages (`max_pages`) and resources (`max_resources`); per page, entries
  (`max_page_resources`). Over a resource or page cap the search is truncated and says so; an answer
  over the byte or value budget is refused unread (a later page truncates its search instead).
Compressed answers are not asked for (`Accept-Encoding: identity`) and never decoded (the body is read
raw, so a gzip answer is not JSON and is refused): a small gzip body can expand a thousandfold inside
one read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from cds_hooks.netpolicy.urls import normalise_url, resolve_link, same_server, server_allowed
from cds_hooks.settings.config import FetchLimits
from cds_hooks.telemetry import metrics

log = logging.getLogger("cds_hooks.fhir.fetch")
# httpx logs every request URL at INFO (and httpcore the headers at DEBUG): the
# URL holds the patient id and the headers the token, so they stay quiet.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
# Token values go into URL paths and queries: FHIR ids and references only.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9\-.]{1,64}(/[A-Za-z0-9\-.]{1,64})?")  # whole value: fullmatch
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


# --------------------------------------------------------------------------- templates


def render_template(template: str, tokens: Mapping[str, str | None]) -> str | None:
    """The template with its `{{...}}` tokens replaced, or None when a token
    has no value (the key cannot be fetched) or a value is not a plain FHIR id
    or reference (it could steer the URL elsewhere)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        v = tokens.get(match.group(1))
        if v is None or not _SAFE_VALUE.fullmatch(v) or any(part.strip(".") == "" for part in v.split("/")):
            missing = True
            return ""
        return v  # only letters, digits, '-', '.' and one '/': nothing to percent-encode

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


class _OverBudget(_Failed):
    """The hook call's byte or JSON-value budget is spent."""


def _json_values(chunk: bytes | bytearray) -> int:
    # Every JSON value but the first follows one of these bytes, so this bounds what orjson would build.
    return chunk.count(b"{") + chunk.count(b"[") + chunk.count(b",") + chunk.count(b":")


class _Call:
    """One hook call's deadline and remaining budget, shared by its threads."""

    def __init__(self, limits: FetchLimits, deadline: float) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._bytes = limits.max_bytes
        self._values = limits.max_json_values
        self._resources = limits.max_total_resources

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def bytes_left(self) -> int:
        return self._bytes

    def take(self, size: int, values: int) -> bool:
        """Spend bytes and values just read; False once either is over budget (what was read stays spent)."""
        with self._lock:
            self._bytes -= size
            self._values -= values
            return self._bytes >= 0 and self._values >= 0

    def take_resources(self, wanted: int) -> int:
        with self._lock:
            granted = max(0, min(wanted, self._resources))
            self._resources -= granted
            return granted


class FhirFetcher:
    """One pooled HTTP client and thread pool for the app's lifetime; one
    `fetch` call per hook. Thread-safe."""

    def __init__(self, limits: FetchLimits, allowlist: tuple[str, ...] = (), loopback: bool | None = None) -> None:
        self.limits = limits
        self.allowlist = allowlist
        self.loopback = loopback  # see server_allowed: None means "only without an allow-list"
        # follow_redirects=False: a redirect could point anywhere.
        self._client = httpx.Client(
            follow_redirects=False,
            headers={"Accept": FHIR_JSON, "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir-fetch")
        self._running = 0
        self._running_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    @property
    def in_flight(self) -> int:
        """Fetch threads still working, for any call (0 soon after every answer has been sent)."""
        return self._running

    def allowed(self, server: str) -> bool:
        return server_allowed(server, self.allowlist, self.loopback)

    def fetch(
        self, server: str, queries: Mapping[str, str], token: str | None, deadline: float
    ) -> Fetched:
        """Run each key's relative query against `server` concurrently.

        `deadline` is a `time.monotonic()` instant: whatever has not answered
        by then is a timeout failure. The caller must have checked `allowed`.
        """
        base = normalise_url(server)
        if base is None or not self.allowed(server):  # defence in depth; the service checks first
            raise ValueError("FHIR server not on the allow-list")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        call = _Call(self.limits, deadline)
        futures: dict[Future[tuple[Any, FetchFailure | None]], str] = {
            self._pool.submit(self._run, base, query, headers, call): key for key, query in queries.items()
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
        # Still running means past the deadline: abandoned and reported; each stops at its next chunk
        # (every step checks the deadline) and parses nothing.
        for future in pending:
            future.cancel()
            result.failures[futures[future]] = FetchFailure("timeout", f"{self.limits.timeout:g} s")
        return result

    def _run(self, base: str, query: str, headers: dict[str, str], call: _Call) -> tuple[Any, FetchFailure | None]:
        kind = resource_type_of(query)
        started = time.perf_counter()
        progress = {"pages": 0, "status": "-"}
        with self._running_lock:
            self._running += 1
        try:
            data, partial, count = self._search_or_read(base, query, headers, call, progress)
        except _Failed as exc:
            _log(kind, progress["status"], started, progress["pages"], 0, exc.failure)
            return exc.failure, None
        except (TypeError, ValueError, AttributeError) as exc:
            # Whatever shape a remote server sends, it is that server's bad answer, never our 500.
            failure = FetchFailure("bad-response", type(exc).__name__)
            _log(kind, progress["status"], started, progress["pages"], 0, failure)
            return failure, None
        finally:
            with self._running_lock:
                self._running -= 1
        _log(kind, progress["status"], started, progress["pages"], count, truncated=partial is not None)
        return data, partial

    def _search_or_read(
        self, base: str, query: str, headers: dict[str, str], call: _Call, progress: dict[str, Any]
    ) -> tuple[Any, FetchFailure | None, int]:
        """The resource (a read), or every page of a search as one searchset Bundle."""
        url = normalise_url(f"{base}/{query}", query=True)
        if url is None or not same_server(url, base):  # the template and its values are checked; so is the URL
            raise _Failed(FetchFailure("bad-response", "query URL refused"))
        body, progress["status"] = self._get(url, headers, call, read="?" not in query)
        progress["pages"] = 1
        if body is None or body.get("resourceType") != "Bundle":
            return body, None, 0 if body is None else 1
        entries: list[dict[str, Any]] = []
        partial = self._add_page(body, entries, call)
        while partial is None and (link := _next_link(body)) is not None:
            if progress["pages"] >= self.limits.max_pages or len(entries) >= self.limits.max_resources:
                partial = FetchFailure("truncated")
                break
            url = resolve_link(link, base)
            if url is None or not same_server(url, base):  # a next link must not lead elsewhere
                raise _Failed(FetchFailure("bad-response", "paging link to another server"))
            try:
                body, progress["status"] = self._get(url, headers, call, read=False)
            except _OverBudget:  # keep the pages already read, and say the rest was not
                partial = FetchFailure("truncated")
                break
            progress["pages"] += 1
            if body is None or body.get("resourceType") != "Bundle":
                raise _Failed(FetchFailure("bad-response", "a result page is not a Bundle"))
            partial = self._add_page(body, entries, call)
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}, partial, len(entries)

    def _add_page(self, bundle: dict[str, Any], entries: list[dict[str, Any]], call: _Call) -> FetchFailure | None:
        """Add a page's entries within the page, search and call caps; a truncation if any cap cut it."""
        page = bundle.get("entry")
        if page is None:
            page = []
        if not isinstance(page, list):
            raise _Failed(FetchFailure("bad-response", "Bundle.entry is not an array"))
        cut = len(page) > self.limits.max_page_resources
        page = [e for e in page[: self.limits.max_page_resources] if isinstance(e, dict)]
        room = self.limits.max_resources - len(entries)
        if len(page) > room:
            cut, page = True, page[:room]
        granted = call.take_resources(len(page))
        if granted < len(page):
            cut, page = True, page[:granted]
        entries.extend(page)
        return FetchFailure("truncated") if cut else None

    def _get(self, url: str, headers: dict[str, str], call: _Call, read: bool) -> tuple[Any, int]:
        """GET one URL; JSON or None (404 on a read); `_Failed` for anything else.

        The body is streamed so that the deadline and the budget hold while it arrives: httpx's
        timeout bounds each network step, not a server that trickles bytes."""
        timeout = FetchFailure("timeout", f"{self.limits.timeout:g} s")
        if call.over():
            raise _Failed(timeout)
        buffer = bytearray()  # grows in place (no list of chunks joined into a second copy)
        try:
            with self._client.stream("GET", url, headers=headers,
                                     timeout=max(0.001, call.deadline - time.monotonic())) as response:
                status = response.status_code
                if status in (401, 403):
                    raise _Failed(FetchFailure("refused", f"HTTP {status}"))
                if status == 404 and read:
                    return None, status  # a read that found nothing: "no data", as prefetch null
                if 300 <= status < 400:
                    raise _Failed(FetchFailure("bad-response", f"HTTP {status} redirect, not followed"))
                if status != 200:
                    raise _Failed(FetchFailure("server-error", f"HTTP {status}"))
                over = _OverBudget(FetchFailure("bad-response", "answer over the byte or JSON-value cap"))
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > call.bytes_left():
                    raise over  # refused unread
                for chunk in response.iter_raw():
                    if call.over():
                        raise _Failed(timeout)
                    if not call.take(len(chunk), _json_values(chunk)):
                        raise over
                    buffer += chunk
        except httpx.TimeoutException:
            raise _Failed(timeout) from None
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # The exception text can hold the URL (patient id): keep only its kind.
            raise _Failed(FetchFailure("unreachable", type(exc).__name__)) from None
        if call.over():  # the answer has been sent, or is due: parse nothing
            raise _Failed(timeout)
        try:
            body = orjson.loads(buffer)
        except orjson.JSONDecodeError:
            raise _Failed(FetchFailure("bad-response", "not JSON")) from None
        del buffer
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _Failed(FetchFailure("bad-response", "not a FHIR resource"))
        if body["resourceType"] == "OperationOutcome":
            raise _Failed(FetchFailure("server-error", "OperationOutcome"))
        return body, status


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _log(
    kind: str, status: int | str, started: float, pages: int, count: int, failure: FetchFailure | None = None,
    truncated: bool = False,
) -> None:
    # What was asked and how it went; never the URL (its query holds patient ids) or the token.
    resource_type = kind.split(" ", 1)[0]  # from the rules' prefetch template, so a bounded set
    metrics.FHIR_QUERIES.labels(resource_type).inc()
    if failure:
        metrics.FHIR_FAILURES.labels(resource_type, failure.reason).inc()
    log.info(
        "fhir query=%r status=%s ms=%.1f pages=%d results=%d%s%s",
        kind, status, (time.perf_counter() - started) * 1000, pages, count,
        f" failure={failure.reason} detail={failure.detail!r}" if failure else "", " truncated" if truncated else "",
    )
