"""Which URLs this service may fetch: one rule for every outbound request.

Used by the settings (to check the FHIR allow-list at start-up), the FHIR
fallback client (`fhirServer`, paging links), JWK Set fetching and audit
downloads. Pure functions over strings: no I/O and no imports from the rest
of the package, so every layer can use them.

Every check goes through `normalise_url`. A URL is compared in its normal form
(lower-case scheme and host, default port dropped, no trailing slash), and a URL
whose meaning a client or server could read differently from ours is refused
outright, before any connection: dot segments (`/fhir/../admin`, also as `%2e`),
empty segments, `;` path parameters (`..;`), backslashes and encoded `/ \\ % ;` in the path,
a fragment, userinfo, spaces, control or non-ASCII characters, an escaped
unreserved character (it would change under normalisation), a host that is
not a plain name or a canonical IP address (`127.1`, `2130706433`, `0x7f.0.0.1`),
and, where the caller says so, a query.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 pchar without ';' (path parameters: Tomcat-style servers read `..;` as `..`); so no backslash
# either (read as "/" by browsers and some servers), nor any other character that would need escaping.
_PATH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@%")
# Escaped bytes a server might decode into structure: / \ % ; ? # (and controls, non-ASCII: below).
_ESCAPES_REFUSED = frozenset(b"/\\%;?#")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)"
                  r"(?:\?(?P<query>[^#]*))?(?P<fragment>#.*)?", re.DOTALL)
_HOST_PORT = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_\-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int
    path: str  # "" or "/a/b", no trailing slash
    query: str | None

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}" + ("" if self.query is None else f"?{self.query}")


def _host(text: str) -> str | None:
    """The host in normal form, or None unless it is a DNS name, a dotted-quad IPv4 or an IPv6 literal."""
    text = text.lower()
    labels = text.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Browsers and some resolvers read 127.1, 2130706433 and 0x7f.0.0.1 as IPv4: only the canonical form.
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            return None
    return text if len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels) else None


def _path(text: str) -> str | None:
    """The path without its trailing slash, or None if it is not one a server reads exactly as we do."""
    if text in ("", "/"):
        return ""
    trimmed = text[:-1] if text.endswith("/") else text
    for segment in trimmed[1:].split("/"):
        if segment in ("", ".", "..") or not set(segment) <= _PATH_CHARS:
            return None
        for escape in re.finditer(r"%(.?.?)", segment):
            try:
                byte = int(escape.group(1), 16) if len(escape.group(1)) == 2 else -1
            except ValueError:
                return None
            if byte < 0x20 or byte >= 0x7F or byte in _UNRESERVED or byte in _ESCAPES_REFUSED:
                return None  # malformed, control, non-ASCII, would change when decoded, or structural
    return re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), trimmed)


def _parse(url: str, query: bool) -> _Url | None:
    if not isinstance(url, str) or not url or any(not "!" <= c <= "~" for c in url):
        return None  # empty, space, control or non-ASCII
    match = _URL.fullmatch(url)
    if match is None or match["fragment"] is not None or (match["query"] is not None and not query):
        return None
    scheme = match["scheme"].lower()
    authority = _HOST_PORT.fullmatch(match["authority"])
    if scheme not in _DEFAULT_PORTS or authority is None:  # no host, userinfo ('@'), or a broken port
        return None
    if authority["ipv6"] is not None:
        try:
            host: str | None = ipaddress.IPv6Address(authority["ipv6"]).compressed
        except ValueError:
            return None
    else:
        host = _host(authority["name"])
    port = int(authority["port"]) if authority["port"] is not None else _DEFAULT_PORTS[scheme]
    path = _path(match["path"])
    if host is None or path is None or not 0 < port < 65536:
        return None
    return _Url(scheme, host, port, path, match["query"])


def normalise_url(url: str, query: bool = False) -> str | None:
    """The URL in normal form, or None when it must not be fetched (see the module docstring).

    `query=False` (a server's base URL, an allow-list entry) refuses any `?`; `query=True` (a paging
    link, a download) allows a query of printable ASCII. A fragment is always refused."""
    parsed = _parse(url, query)
    return None if parsed is None else parsed.text()


def resolve_link(link: str, base: str) -> str | None:
    """A link from `base`'s answer (an absolute URL, `/path`, `?query` or `relative/path`) in normal form,
    or None. Unlike urljoin it never resolves dot segments: they are refused like everywhere else."""
    if not isinstance(link, str) or (parsed := _parse(base, query=True)) is None:
        return None
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", link):
        absolute = link
    elif link.startswith("//"):
        return None  # another host in the scheme of this one: never a paging link we follow
    elif link.startswith("/"):
        absolute = _Url(parsed.scheme, parsed.host, parsed.port, "", None).text() + link
    elif link.startswith("?"):
        absolute = _Url(parsed.scheme, parsed.host, parsed.port, parsed.path, None).text() + link
    else:
        absolute = _Url(parsed.scheme, parsed.host, parsed.port, parsed.path, None).text() + "/" + link
    return normalise_url(absolute, query=True)


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # other names may resolve anywhere


def http_url_parts(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, lower-case host, port, path without trailing /) of an http(s) URL that passes
    `normalise_url` (a query is allowed and left out); None for anything else."""
    parsed = _parse(url, query=True)
    return None if parsed is None else (parsed.scheme, parsed.host, parsed.port, parsed.path)


def fetchable_url(url: str) -> bool:
    """The one rule for every URL this service fetches: it passes `normalise_url` (a query is allowed),
    and it is https unless the host is loopback (tests, a local JWKS or FHIR sidecar)."""
    parts = http_url_parts(url)
    return parts is not None and (parts[0] == "https" or is_loopback_host(parts[1]))


def check_allowlist_entry(prefix: str) -> str | None:
    """The problem with one configured allow-list entry, or None."""
    if normalise_url(prefix) is None:
        return (f"{prefix!r} is not a plain http(s) base URL (no credentials, query, fragment, dot or empty "
                "segments, or escaped characters)")
    if not fetchable_url(prefix):
        return f"{prefix!r} must use https: only loopback FHIR servers may use plain http"
    return None


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def server_allowed(server: str, allowlist: tuple[str, ...], loopback: bool | None = None, query: bool = False) -> bool:
    """May this deployment send queries to `server` (a base URL: no query, unless `query=True`, as for a
    download whose URL a server handed out)?

    The server must start with a configured prefix: same scheme, host and port, and a path below the
    prefix's path on a segment boundary, so `https://ehr.example/fhir` does not admit
    `https://ehr.example.evil/` or `https://ehr.example/fhir-admin`. Any loopback server is allowed
    too when `loopback` says so; by default (None) exactly when no allow-list is configured, for
    development and the sandbox. Plain http is never allowed off loopback.
    """
    parsed = _parse(server, query=query)
    if parsed is None or not (parsed.scheme == "https" or is_loopback_host(parsed.host)):
        return False
    if (not allowlist if loopback is None else loopback) and is_loopback_host(parsed.host):
        return True
    for prefix in allowlist:
        allowed = _parse(prefix, query=False)
        if allowed is not None and (allowed.scheme, allowed.host, allowed.port) == \
                (parsed.scheme, parsed.host, parsed.port) and _within(parsed.path, allowed.path):
            return True
    return False


def same_server(url: str, server: str) -> bool:
    """Is `url` (a query is allowed) on `server`: same scheme, host and port, and at or below its path?"""
    a, b = http_url_parts(url), http_url_parts(server)
    return a is not None and b is not None and a[:3] == b[:3] and _within(a[3], b[3])
