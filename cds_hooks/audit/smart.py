"""SMART Backend Services: an access token for a Bulk export, by client-credentials grant with a
`private_key_jwt` client assertion (RS384 for an RSA key, ES384 for an EC P-384 key).

The token endpoint comes from the server's `.well-known/smart-configuration` and must pass the same
allow-list as every other request. The key is read from the settings (`audit_smart_key`); neither it,
the assertion nor the token is ever logged or shown in an error.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from cds_hooks.netpolicy.urls import server_allowed
from cds_hooks.settings.config import Settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds; SMART says at most five minutes
REFRESH_MARGIN = 60  # seconds before expiry a token is renewed


class SmartError(Exception):
    """No token: the message says why, without the token or the key."""


def algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    raise SmartError("the SMART key must be an RSA key (RS384) or an EC P-384 key (ES384)")


class SmartAuth:
    def __init__(self, settings: Settings, client: httpx.Client, base: str) -> None:
        if not settings.audit_smart_client_id or not settings.audit_smart_key:
            raise SmartError("SMART Backend Services needs audit_smart_client_id and audit_smart_key")
        try:
            self.key = load_pem_private_key(settings.audit_smart_key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SmartError(f"the SMART key {settings.audit_smart_key} cannot be read "
                             f"({type(exc).__name__})") from None
        self.algorithm = algorithm_for(self.key)
        self.client_id = settings.audit_smart_client_id
        self.key_id = settings.audit_smart_key_id
        self.scope = settings.audit_smart_scope
        self.allowlist = settings.fhir_allowlist
        self.client = client
        self.base = base.rstrip("/")
        self._token: str | None = None
        self._expires = 0.0

    def token(self, renew: bool = False) -> str:
        if renew or self._token is None or time.time() > self._expires - REFRESH_MARGIN:
            self._token, lifetime = self._request_token()
            self._expires = time.time() + lifetime
        return self._token

    def token_endpoint(self) -> str:
        response = self.client.get(f"{self.base}/.well-known/smart-configuration")
        if response.status_code != 200:
            raise SmartError(f"the server has no SMART configuration (HTTP {response.status_code})")
        try:
            config = response.json()
        except ValueError:
            raise SmartError("the server's SMART configuration is not JSON") from None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str) or not server_allowed(endpoint, self.allowlist):
            raise SmartError("the SMART token endpoint is missing or not on the allow-list")
        supported = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(supported, list) and supported and self.algorithm not in supported:
            raise SmartError(f"the token endpoint does not accept {self.algorithm} client assertions")
        return endpoint

    def assertion(self, endpoint: str) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": endpoint, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)  # type: ignore[arg-type]

    def _request_token(self) -> tuple[str, float]:
        endpoint = self.token_endpoint()
        response = self.client.post(endpoint, data={
            "grant_type": "client_credentials", "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(endpoint),
        })
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            why = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise SmartError(f"the token endpoint refused the client (HTTP {response.status_code}"
                             f"{': ' + str(why)[:200] if why else ''})")
        lifetime = body.get("expires_in")
        return body["access_token"], float(lifetime) if isinstance(lifetime, int | float) else 300.0
