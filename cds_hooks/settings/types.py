"""Settings types shared by the settings modules: the error every bad setting raises, and a trusted issuer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class SettingsError(ValueError):
    """The configuration is unusable; the message says which setting and why."""


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS Client (EHR) whose JWTs are accepted; `iss` must match the token's claim exactly."""

    iss: str
    # The client's JWK Set, exchanged out-of-band: a file path or an https URL.
    jwks: str | None = None
    # JWK Set URLs that a token's `jku` header may name (a `jwks` URL is always allowed).
    jku: tuple[str, ...] = ()
    # When set, the token's `tenant` claim must be one of these.
    tenants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ServiceSettings:
    """One CDS service's settings (`[services.<service id>]` in the settings file).

    `silent`: the service evaluates and records the cards it would have shown (flagged silent in
    the store), and answers `{"cards": []}`: a pilot that shows clinicians nothing."""

    mode: Literal["live", "silent"] = "live"
