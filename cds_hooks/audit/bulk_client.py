"""The Bulk Data `$export` client: kick-off, status polling, downloads, with SMART Backend Services.

Kick-off at system, `Patient` or `Group/{id}` level with `_type`, `_since` and `Prefer: respond-async`;
polling the status URL as `Retry-After` says (within `audit_export_timeout`); each output file
downloaded streaming to disk under a size cap (`audit_max_file_bytes`); the export deleted on the
server when done. The rules of the prefetch fallback hold for every request: the URL must pass the
allow-list (`server_allowed`: https, or loopback), redirects are never followed, and the access token
goes only to the FHIR server itself. When the server answers 401 and SMART credentials are set, a
token is obtained (`smart`) and the request repeated once. Errors name the host, never a full URL
(signed download URLs carry credentials in their query).
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from cds_hooks.audit.ndjson import BulkInput, InputFile, type_from_name
from cds_hooks.audit.progress import Progress
from cds_hooks.audit.smart import SmartAuth, SmartError
from cds_hooks.netpolicy.urls import normalise_url, resolve_link, same_server, server_allowed
from cds_hooks.settings.config import Settings

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
MAX_JSON_BYTES = 16 * 1024 * 1024  # a status answer or manifest larger than this is refused
MAX_WAIT = 120.0  # never sleep longer than this between polls, whatever Retry-After says


class BulkError(Exception):
    """The export failed; the message says where and why (host only, no URL, no token)."""


@dataclass(frozen=True)
class ExportRequest:
    level: str = "system"  # system | patient | group
    group: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def retry_after(value: str | None, default: float = 2.0) -> float:
    """Seconds to wait: Retry-After as seconds or an HTTP date, within [0.2, MAX_WAIT]."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        seconds = when.timestamp() - time.time() if when else default
    return min(max(seconds, 0.2), MAX_WAIT)


class BulkClient:
    def __init__(self, base: str, settings: Settings, progress: Progress | None = None) -> None:
        self.base = base.rstrip("/")
        self.allowlist = settings.fhir_allowlist
        self.max_bytes = settings.audit_max_file_bytes
        self.timeout = settings.audit_export_timeout
        self.progress = progress or Progress(False)
        # follow_redirects=False: a redirect could point anywhere, as in the prefetch fallback.
        self.client = httpx.Client(follow_redirects=False, timeout=httpx.Timeout(120.0, connect=10.0))
        self.smart: SmartAuth | None = None
        if settings.audit_smart_client_id and self.base:
            self._allowed(self.base, "FHIR server")
            self.smart = SmartAuth(settings, self.client, self.base)
        self.token: str | None = None

    def __enter__(self) -> BulkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _allowed(self, url: str, what: str) -> str:
        """The URL in normal form, the one to request, when the allow-list admits it (status and file URLs a
        server hands out may carry a query; dot segments and the like are refused, as everywhere)."""
        normal = normalise_url(url, query=True)
        if normal is None or not server_allowed(normal, self.allowlist, query=True):
            raise BulkError(f"{what} {_host(url)} is not on the allow-list (LUMBAR_CDS_FHIR_ALLOWLIST; https unless "
                            "loopback) or is not a plain URL; no request was sent")
        return normal

    def _send(self, method: str, url: str, what: str, stream: bool = False, **kwargs: Any) -> httpx.Response:
        url = self._allowed(url, what)
        for attempt in (1, 2):
            headers = {"Accept": FHIR_JSON, **kwargs.pop("headers", {})}
            if self.token and self.base and same_server(url, self.base):
                headers["Authorization"] = f"Bearer {self.token}"
            request = self.client.build_request(method, url, headers=headers, **kwargs)
            try:
                response = self.client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise BulkError(f"{what} at {_host(url)} could not be reached ({type(exc).__name__})") from None
            if response.status_code == 401 and attempt == 1 and self.smart is not None:
                response.close()
                try:
                    self.token = self.smart.token(renew=self.token is not None)
                except (SmartError, httpx.HTTPError) as exc:
                    raise BulkError(f"SMART Backend Services: {exc}") from None
                kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                continue
            if 300 <= response.status_code < 400:
                response.close()
                raise BulkError(f"{what} at {_host(url)} answered a redirect (HTTP {response.status_code}), "
                                "which is never followed")
            return response
        raise AssertionError("unreachable")

    def _json(self, response: httpx.Response, what: str) -> Any:
        body = response.read()
        if len(body) > MAX_JSON_BYTES:
            raise BulkError(f"{what}: answer over {MAX_JSON_BYTES} bytes")
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            raise BulkError(f"{what}: the answer is not JSON (HTTP {response.status_code})") from None

    def _failure(self, response: httpx.Response, what: str) -> BulkError:
        detail = ""
        try:
            body = self._json(response, what)
            issues = body.get("issue") if isinstance(body, dict) else None
            if isinstance(issues, list) and issues and isinstance(issues[0], dict):
                detail = f": {str(issues[0].get('diagnostics') or issues[0].get('code'))[:300]}"
        except BulkError:
            pass
        return BulkError(f"{what} failed with HTTP {response.status_code}{detail}")

    # ---- the export -------------------------------------------------------------------------------

    def export(self, request: ExportRequest, into: Path) -> BulkInput:
        path = {"system": "$export", "patient": "Patient/$export"}.get(request.level)
        if path is None:
            if not request.group:
                raise BulkError("a Group export needs a group id")
            path = f"Group/{quote(request.group, safe='')}/$export"
        params = {"_outputFormat": NDJSON}
        if request.types:
            params["_type"] = ",".join(request.types)
        if request.since:
            params["_since"] = request.since
        kickoff = self._send("GET", f"{self.base}/{path}", "the $export kick-off", params=params,
                             headers={"Prefer": "respond-async"})
        if kickoff.status_code != 202:
            raise self._failure(kickoff, "the $export kick-off")
        status_url = kickoff.headers.get("Content-Location")
        if not status_url:
            raise BulkError("the $export kick-off answered 202 without a Content-Location")
        status_url = resolve_link(status_url, self.base) or status_url  # refused by _send if not resolvable
        manifest = self._poll(status_url)
        try:
            return self._download_all(manifest, into)
        finally:
            self._delete(status_url)

    def _poll(self, status_url: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        self.progress.phase("export", None, " polls")
        while True:
            response = self._send("GET", status_url, "the export status")
            if response.status_code == 200:
                manifest = self._json(response, "the export manifest")
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise BulkError("the export manifest has no `output` array")
                return manifest
            if response.status_code not in (202, 429):
                raise self._failure(response, "the export")
            wait = retry_after(response.headers.get("Retry-After"))
            response.close()
            self.progress.update(1, progress=response.headers.get("X-Progress", "")[:40])
            if time.monotonic() + wait > deadline:
                raise BulkError(f"the export did not finish within {self.timeout:g} s (audit_export_timeout)")
            time.sleep(wait)

    def _delete(self, status_url: str) -> None:
        with contextlib.suppress(BulkError):  # the server may now drop the files; a failure loses nothing of ours
            self._send("DELETE", status_url, "the export clean-up").close()

    def download_manifest(self, bulk: BulkInput, into: Path) -> BulkInput:
        """Fetch the http(s) files a manifest lists (`audit MANIFEST` with remote URLs)."""
        manifest = {"transactionTime": bulk.transaction_time, "requiresAccessToken": bulk.requires_token,
                    "output": [{"type": t, "url": u} for t, u in bulk.remote]}
        fetched = self._download_all(manifest, into)
        return BulkInput([*bulk.files, *fetched.files], bulk.transaction_time, bulk.error_files)

    def _download_all(self, manifest: dict[str, Any], into: Path) -> BulkInput:
        needs_token = manifest.get("requiresAccessToken") is True
        outputs = [o for o in manifest.get("output") or () if isinstance(o, dict) and isinstance(o.get("url"), str)]
        errors = [o for o in manifest.get("error") or () if isinstance(o, dict) and isinstance(o.get("url"), str)]
        self.progress.phase("downloading", len(outputs) + len(errors), " files")
        files, error_files = [], []
        for i, entry in enumerate([*outputs, *errors]):
            rtype = entry.get("type") if isinstance(entry.get("type"), str) else None
            url = (resolve_link(entry["url"], self.base) or entry["url"]) if self.base else entry["url"]
            dest = into / f"{i:05d}.{rtype or type_from_name(url) or 'mixed'}.ndjson"
            self._download(url, dest, needs_token)
            target = files if i < len(outputs) else error_files
            target.append(InputFile(dest, rtype, dest.stat().st_size))
            self.progress.update(1)
        return BulkInput(files, manifest.get("transactionTime"), error_files)

    def _download(self, url: str, dest: Path, needs_token: bool) -> None:
        if needs_token and not (self.base and same_server(url, self.base)):
            raise BulkError(f"an export file at {_host(url)} needs the access token, which is only ever sent to "
                            "the FHIR server itself")
        response = self._send("GET", url, "an export file", stream=True, headers={"Accept": NDJSON})
        try:
            if response.status_code != 200:
                raise self._failure(response, "downloading an export file")
            size = 0
            with dest.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BulkError(f"an export file at {_host(url)} is over {self.max_bytes} bytes "
                                        "(audit_max_file_bytes)")
                    handle.write(chunk)
        finally:
            response.close()
