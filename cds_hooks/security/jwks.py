"""JWK Sets for token verification: read from configured files or allow-listed URLs, parsed, cached. No Flask.

Only keys a CDS Client may sign with are kept (EC, or RSA of at least MIN_RSA_BITS; never HMAC).
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_hooks.netpolicy.urls import fetchable_url

log = logging.getLogger("cds_hooks.security.jwks")

# alg -> (JWK kty, EC curve). Only asymmetric JWS algorithms exist here, so neither `none` nor any
# HMAC algorithm can ever be configured (CDS Hooks §JWT Signing Algorithm: SHALL NOT).
SIGNING_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
}
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 256 * 1024
JWKS_MIN_REFRESH_SECONDS = 30.0  # at most one JWKS load per source in this window, even for unknown kids
JWKS_FETCH_TIMEOUT_SECONDS = 5.0


def is_url(source: str) -> bool:
    """A JWK Set source is a URL, else a file path."""
    return "://" in source


@dataclass(frozen=True)
class PublicKey:
    kid: str
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own `alg`, when it states one
    key: Any

    def fits(self, alg: str) -> bool:
        kty, crv = SIGNING_ALGORITHMS[alg]
        return self.kty == kty and (crv is None or self.crv == crv) and self.alg in (None, alg)


def _public_key(jwk: dict[str, Any]) -> PublicKey | None:
    kid, kty = jwk.get("kid"), jwk.get("kty")
    if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
        return None
    document = json.dumps(jwk)
    try:
        if kty == "EC":
            key = ECAlgorithm.from_jwk(document)
        elif kty == "RSA":
            key = RSAAlgorithm.from_jwk(document)
        else:
            return None
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        key = key.public_key()  # a JWKS should hold only public keys; use the public half regardless
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return None
    alg = jwk.get("alg")
    return PublicKey(kid, str(kty), jwk.get("crv"), alg if isinstance(alg, str) else None, key)


def parse_jwks(document: bytes) -> dict[str, PublicKey]:
    """kid -> public key; unusable keys (HMAC, encryption-only, weak RSA, no kid) are left out."""
    try:
        jwks = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError('not a JWK Set: expected {"keys": [...]}')
    keys = (_public_key(k) for k in jwks["keys"] if isinstance(k, dict))
    return {k.kid: k for k in keys if k is not None}


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, PublicKey] = field(default_factory=dict)
    loaded_at: float | None = None
    attempted_at: float | None = None


def _elapsed_at_least(since: float | None, now: float, seconds: float) -> bool:
    # A clock that went backwards counts as elapsed, so a wall-clock step cannot freeze the cache.
    return since is None or not (0 <= now - since < seconds)


class JwksCache:
    """JWK Sets by source (file path or URL), kept for `ttl` seconds and reloaded on an unknown kid.

    Any load, scheduled or for an unknown kid, happens at most once per JWKS_MIN_REFRESH_SECONDS per
    source, so a stream of tokens with made-up kids cannot make us hammer the client's server.
    A failed reload keeps the keys already loaded.
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = clock
        self._http = httpx.Client(timeout=JWKS_FETCH_TIMEOUT_SECONDS, follow_redirects=False)
        weakref.finalize(self, self._http.close)  # the client goes with the cache
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    def find(self, source: str, kid: str) -> tuple[PublicKey | None, bool]:
        """(key or None, whether this source has ever loaded)."""
        with self._entries_lock:
            entry = self._entries.setdefault(source, _Entry())
        with entry.lock:
            now = self._clock()
            wanted = kid not in entry.keys or _elapsed_at_least(entry.loaded_at, now, self.ttl)
            if wanted and _elapsed_at_least(entry.attempted_at, now, JWKS_MIN_REFRESH_SECONDS):
                entry.attempted_at = now
                try:
                    entry.keys = parse_jwks(self._read(source))
                    entry.loaded_at = now
                except (OSError, ValueError, httpx.HTTPError) as exc:
                    log.warning("JWK Set not loaded from %s: %s", source, exc)
            return entry.keys.get(kid), entry.loaded_at is not None

    def _read(self, source: str) -> bytes:
        if not is_url(source):
            with open(source, "rb") as f:
                body = f.read(MAX_JWKS_BYTES + 1)
        elif not fetchable_url(source):  # configuration is validated; this guards the code path itself
            raise ValueError("URL not allowed")
        else:
            with self._http.stream("GET", source, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        break
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        return body
