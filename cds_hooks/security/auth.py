"""Verify the JWT a CDS Client sends with every call (CDS Hooks 2.0 §Trusting CDS Clients). No Flask.

A token is accepted only when every check passes, in this order:

1. compact JWS with a JSON header and payload, no `crit`/`b64` header;
2. header `alg` in the accepted set (asymmetric only: never `none`, never HMAC) and a `kid`;
3. `iss` is a trusted issuer;
4. a `jku` header, if any, is on that issuer's allow-list;
5. the key named by `kid` is in the issuer's JWK Set (configured file or URL, or the allowed `jku`)
   and is of the kind `alg` needs (RSA of at least 2048 bits, or EC on the matching curve);
6. the signature verifies;
7. `aud` names this endpoint, `exp`/`iat`/`nbf` are whole or decimal epoch seconds in range and hold with a
   small leeway, the lifetime `exp - iat` is at most the configured maximum, `tenant` is allowed;
8. the issuer's `jti` has not been used before (recorded until the token expires).

Any failure raises AuthError with a short machine reason for the log; callers answer 401 without it.
Reasons: missing-header, malformed, alg-not-allowed, missing-kid, unknown-issuer, jku-not-allowed,
unknown-kid, jwks-unavailable, key-alg-mismatch, bad-signature, missing-claim, wrong-audience, expired,
iat-in-future, not-yet-valid, lifetime-too-long, tenant-not-allowed, replayed-jti. The `iss` and `jti` travel
with the error (for the log) only once the signature has verified: before that they are the caller's words.
JWK Sets are only ever read from configured files and allow-listed URLs.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt

from cds_hooks.netpolicy.urls import fetchable_url
from cds_hooks.security.jwks import SIGNING_ALGORITHMS, JwksCache, PublicKey, is_url
from cds_hooks.settings.config import Settings, SettingsError, TrustedIssuer

MAX_TOKEN_CHARS = 16 * 1024
# Time claims are epoch seconds; anything outside [0, MAX_EPOCH_SECONDS] (year 5138) is malformed, which
# also keeps a 400-digit integer from overflowing float arithmetic.
MAX_EPOCH_SECONDS = 10**11
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


class AuthError(Exception):
    """The token is refused. `reason` is for the log only, never for the response."""

    def __init__(self, reason: str, iss: str | None = None, jti: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.jti = jti


class ReplayStore(Protocol):
    def first_use_of_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool: ...


@dataclass(frozen=True)
class VerifiedToken:
    """Who called: the issuer and, when the token names one, the tenant (override memory is kept per both)."""

    iss: str
    tenant: str | None


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing-header")
    return token.strip()


def validate_auth_settings(settings: Settings) -> None:
    """Raise SettingsError unless the authentication settings are complete and safe."""
    unknown = [a for a in settings.auth_algorithms if a not in SIGNING_ALGORITHMS]
    if unknown or not settings.auth_algorithms:
        raise SettingsError(
            f"auth_algorithms {list(settings.auth_algorithms)} must be a non-empty subset of "
            f"{', '.join(SIGNING_ALGORITHMS)}: CDS Hooks forbids 'none' and symmetric (HMAC) algorithms"
        )
    if settings.auth_leeway_seconds < 0 or settings.auth_jwks_cache_seconds < 0:
        raise SettingsError("auth_leeway_seconds and auth_jwks_cache_seconds must not be negative")
    if settings.auth_max_token_lifetime_seconds < 1:
        raise SettingsError("auth_max_token_lifetime_seconds must be at least 1")
    if not settings.auth_issuers:
        return
    base = urlsplit(settings.public_base_url or "")
    if base.scheme not in ("http", "https") or not base.hostname or base.query or base.fragment:
        raise SettingsError(
            "public_base_url (LUMBAR_CDS_PUBLIC_BASE_URL) must be the service's public http(s) base URL, "
            f"e.g. https://cds.example.org, when trusted issuers are configured; got {settings.public_base_url!r}. "
            "Each JWT's aud must equal it plus the endpoint path."
        )
    seen: set[str] = set()
    for issuer in settings.auth_issuers:
        _validate_issuer(issuer, seen)
    if not settings.fhir_allowlist and not settings.fhir_allow_loopback:
        raise SettingsError(
            "with trusted issuers configured, say which FHIR servers the service may query: set "
            "LUMBAR_CDS_FHIR_ALLOWLIST (fhir_allowlist) to the EHRs' FHIR base URLs, or "
            "LUMBAR_CDS_FHIR_ALLOW_LOOPBACK=1 (fhir_allow_loopback) for a FHIR server on this machine. "
            "Without either, any authenticated caller could make the service call ports on this machine."
        )


def _validate_issuer(issuer: TrustedIssuer, seen: set[str]) -> None:
    name = f"trusted issuer {issuer.iss!r}"
    if not issuer.iss or issuer.iss in seen:
        raise SettingsError(f"{name}: iss must be non-empty and listed once")
    seen.add(issuer.iss)
    if not issuer.jwks and not issuer.jku:
        raise SettingsError(f"{name}: give its JWK Set as jwks (a file or https URL) or a jku allow-list")
    if issuer.jwks and is_url(issuer.jwks) and not fetchable_url(issuer.jwks):
        raise SettingsError(f"{name}: jwks URL {issuer.jwks!r} must be https (http only on loopback)")
    if issuer.jwks and not is_url(issuer.jwks) and not Path(issuer.jwks).is_file():
        raise SettingsError(f"{name}: jwks file {issuer.jwks!r} does not exist")
    for url in issuer.jku:
        if not fetchable_url(url):
            raise SettingsError(f"{name}: jku {url!r} must be an https URL (http only on loopback)")
    if issuer.tenants is not None and not all(issuer.tenants):
        raise SettingsError(f"{name}: tenants must be non-empty strings")


def _b64json(segment: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthError("malformed") from None


def _epoch_seconds(value: Any) -> bool:
    # json.loads accepts NaN and Infinity (every comparison with NaN is False, so it fails here too) and
    # integers of any length: comparing them is exact, where float() or math.isfinite() would overflow.
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH_SECONDS


def _loggable(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


class Verifier:
    """Checks tokens against the trusted issuers. `clock` (epoch seconds) may be replaced in tests."""

    def __init__(self, settings: Settings, replay: ReplayStore, clock: Callable[[], float] = time.time) -> None:
        validate_auth_settings(settings)
        self.clock = clock
        self._issuers = {i.iss: i for i in settings.auth_issuers}
        self._algorithms = frozenset(settings.auth_algorithms)
        self._leeway = settings.auth_leeway_seconds
        self._max_lifetime = settings.auth_max_token_lifetime_seconds
        self._base_url = (settings.public_base_url or "").rstrip("/")
        self._replay = replay
        self._keys = JwksCache(settings.auth_jwks_cache_seconds, lambda: self.clock())

    def audience_for(self, path: str) -> str:
        """The `aud` a call to `path` must carry: configured public base URL + path, never the Host header."""
        return self._base_url + path

    def verify(self, token: str, audience: str) -> VerifiedToken:
        parts = token.split(".")
        if len(token) > MAX_TOKEN_CHARS or len(parts) != 3:
            raise AuthError("malformed")
        header, unverified = _b64json(parts[0]), _b64json(parts[1])
        if not isinstance(header, dict) or not isinstance(unverified, dict) or "crit" in header or "b64" in header:
            raise AuthError("malformed")
        iss = unverified.get("iss")

        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise AuthError("alg-not-allowed")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing-kid")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("unknown-issuer")
        key = self._key(issuer, header.get("jku"), kid)
        if not key.fits(alg):
            raise AuthError("key-alg-mismatch")
        try:
            payload = jwt.PyJWS().decode(token, key.key, algorithms=[alg])
        except jwt.PyJWTError:
            raise AuthError("bad-signature") from None
        # From here on only what the signature covers; it must be what the issuer was chosen from.
        claims: Any
        try:
            claims = json.loads(payload)
        except ValueError:
            claims = None
        if claims != unverified:
            raise AuthError("malformed")
        ident = {"iss": _loggable(iss), "jti": _loggable(claims.get("jti"))}  # signed by a trusted issuer
        self._check_claims(claims, issuer, audience, ident)
        jti: str = claims["jti"]
        # Last, so that only a token that passed everything else can use up its jti.
        expires_at = float(claims["exp"]) + self._leeway
        if not self._replay.first_use_of_jti(issuer.iss, jti, expires_at, self.clock()):
            raise AuthError("replayed-jti", **ident)
        tenant = claims.get("tenant")
        return VerifiedToken(issuer.iss, tenant if isinstance(tenant, str) else None)

    def _key(self, issuer: TrustedIssuer, jku: Any, kid: str) -> PublicKey:
        allowed_jku = set(issuer.jku) | ({issuer.jwks} if issuer.jwks and is_url(issuer.jwks) else set())
        if jku is not None and (not isinstance(jku, str) or jku not in allowed_jku):
            raise AuthError("jku-not-allowed")
        sources: list[str] = [issuer.jwks] if issuer.jwks else []
        if jku and jku not in sources:
            sources.append(jku)
        if not sources:
            sources = list(issuer.jku)
        any_loaded = False
        for source in sources:
            key, loaded = self._keys.find(source, kid)
            if key is not None:
                return key
            any_loaded = any_loaded or loaded
        raise AuthError("unknown-kid" if any_loaded else "jwks-unavailable")

    def _check_claims(
        self, claims: dict[str, Any], issuer: TrustedIssuer, audience: str, ident: dict[str, Any]
    ) -> None:
        if any(name not in claims for name in REQUIRED_CLAIMS):
            raise AuthError("missing-claim", **ident)
        aud, exp, iat, nbf = claims["aud"], claims["exp"], claims["iat"], claims.get("nbf")
        audiences: list[Any] = aud if isinstance(aud, list) else [aud]
        if (
            not all(isinstance(a, str) for a in audiences) or not _epoch_seconds(exp) or not _epoch_seconds(iat)
            or (nbf is not None and not _epoch_seconds(nbf)) or not isinstance(claims["jti"], str)
            or not claims["jti"]
        ):
            raise AuthError("malformed", **ident)
        if audience not in audiences:
            raise AuthError("wrong-audience", **ident)
        now, leeway = self.clock(), self._leeway
        if now >= exp + leeway:
            raise AuthError("expired", **ident)
        if iat > now + leeway:
            raise AuthError("iat-in-future", **ident)
        if nbf is not None and nbf > now + leeway:
            raise AuthError("not-yet-valid", **ident)
        if exp - iat > self._max_lifetime:  # also bounds how long its jti row is kept
            raise AuthError("lifetime-too-long", **ident)
        if issuer.tenants is not None and claims.get("tenant") not in issuer.tenants:
            raise AuthError("tenant-not-allowed", **ident)
