"""JWT time claims at their edges, the maximum token lifetime, out-of-range numbers, and what a refusal logs.

The verifier's clock is fixed, so each edge is exact: a second inside the leeway passes, a second outside
fails. Tokens are signed with a real EC key; the replay store is a real SQLite database.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from cds_hooks.security.auth import MAX_EPOCH_SECONDS, MAX_TOKEN_CHARS, AuthError, Verifier, bearer_token
from cds_hooks.settings.config import Settings, TrustedIssuer
from tests.conftest import migrated_store

ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"
AUDIENCE = BASE + "/cds-services"
NOW = 1_800_000_000
LEEWAY = 60
LIFETIME = 300
KEY = ec.generate_private_key(ec.SECP384R1())
KID = "edge-1"


def _token(key: Any = KEY, **claims: Any) -> str:
    payload = {"iss": ISS, "aud": AUDIENCE, "iat": NOW, "exp": NOW + LIFETIME, "jti": str(uuid.uuid4())}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="ES384",
                      headers={"kid": KID})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TrustedIssuer:
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": KID, "alg": "ES384"}
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return TrustedIssuer(ISS, jwks=str(path))


@pytest.fixture
def verify(issuer: TrustedIssuer, tmp_path: Path) -> Callable[[str], str]:
    settings = Settings(public_base_url=BASE, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",),
                        auth_leeway_seconds=LEEWAY, auth_max_token_lifetime_seconds=LIFETIME)
    verifier = Verifier(settings, migrated_store(tmp_path / "db.sqlite3"), clock=lambda: float(NOW))

    def outcome(token: str) -> str:
        try:
            verifier.verify(token, AUDIENCE)
            return "ok"
        except AuthError as exc:
            return exc.reason

    return outcome


# --------------------------------------------------------------------------- leeway edges


def test_exp_a_second_inside_the_leeway_passes_and_at_its_end_fails(verify: Callable[[str], str]) -> None:
    # Expired once now >= exp + leeway.
    assert verify(_token(exp=NOW - LEEWAY + 1, iat=NOW - LEEWAY + 1 - LIFETIME)) == "ok"
    assert verify(_token(exp=NOW - LEEWAY, iat=NOW - LEEWAY - LIFETIME)) == "expired"


def test_iat_at_the_leeway_passes_and_a_second_later_fails(verify: Callable[[str], str]) -> None:
    assert verify(_token(iat=NOW + LEEWAY, exp=NOW + LEEWAY + LIFETIME)) == "ok"
    assert verify(_token(iat=NOW + LEEWAY + 1, exp=NOW + LEEWAY + 1 + LIFETIME)) == "iat-in-future"


def test_nbf_at_the_leeway_passes_and_a_second_later_fails(verify: Callable[[str], str]) -> None:
    assert verify(_token(nbf=NOW + LEEWAY)) == "ok"
    assert verify(_token(nbf=NOW + LEEWAY + 1)) == "not-yet-valid"


def test_the_maximum_lifetime_is_accepted_and_a_second_more_is_not(verify: Callable[[str], str]) -> None:
    assert verify(_token(iat=NOW - 100, exp=NOW - 100 + LIFETIME)) == "ok"
    assert verify(_token(iat=NOW - 100, exp=NOW - 100 + LIFETIME + 1)) == "lifetime-too-long"
    # exp=1e308 was once accepted, its jti row kept for ever: now out of range, and any long life is refused.
    assert verify(_token(exp=1e308)) == "malformed"
    assert verify(_token(exp=NOW + 10**9)) == "lifetime-too-long"


def test_the_first_second_of_the_epoch_is_a_valid_time(verify: Callable[[str], str]) -> None:
    assert verify(_token(nbf=0)) == "ok"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "jti"])
def test_a_signed_nan_is_malformed(verify: Callable[[str], str], claim: str) -> None:
    # json reads NaN; every comparison with it is False, so no bound may be written as "not above" a limit.
    payload = {"iss": ISS, "aud": AUDIENCE, "iat": NOW, "exp": NOW + LIFETIME, "jti": "j", claim: float("nan")}
    token = jwt.api_jws.encode(json.dumps(payload).encode(), KEY, algorithm="ES384", headers={"kid": KID})
    assert verify(token) == "malformed"


def test_a_non_string_issuer_is_refused_not_raised(verify: Callable[[str], str]) -> None:
    payload = {"iss": [ISS], "aud": AUDIENCE, "iat": NOW, "exp": NOW + LIFETIME, "jti": str(uuid.uuid4())}
    token = jwt.api_jws.encode(json.dumps(payload).encode(), KEY, algorithm="ES384", headers={"kid": KID})
    assert verify(token) not in ("ok", "")


def test_the_verified_token_carries_its_tenant_and_a_signed_refusal_its_issuer_and_jti(
    issuer: TrustedIssuer, tmp_path: Path
) -> None:
    settings = Settings(public_base_url=BASE, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",))
    verifier = Verifier(settings, migrated_store(tmp_path / "db.sqlite3"), clock=lambda: float(NOW))
    assert verifier.verify(_token(tenant="north"), AUDIENCE).tenant == "north"
    assert verifier.verify(_token(tenant=7), AUDIENCE).tenant is None
    # Validly signed but malformed: the log may name the (verified) issuer and jti, the jti cut to 200 characters.
    with pytest.raises(AuthError) as refused:
        verifier.verify(_token(exp="soon", jti="j" * 300), AUDIENCE)
    assert (refused.value.reason, refused.value.iss, refused.value.jti) == ("malformed", ISS, "j" * 200)


@pytest.mark.parametrize(("claims", "reason"), [
    ({"aud": None}, "missing-claim"), ({"aud": BASE + "/other"}, "wrong-audience"),
    ({"iat": NOW + LEEWAY + 1, "exp": NOW + LEEWAY + 2}, "iat-in-future"), ({"nbf": NOW + LEEWAY + 1}, "not-yet-valid"),
    ({"iat": NOW, "exp": NOW + LIFETIME + 1}, "lifetime-too-long"), ({"tenant": "south"}, "tenant-not-allowed"),
    ({"exp": NOW - LEEWAY, "iat": NOW - LEEWAY - 1}, "expired"),
])
def test_every_refusal_of_a_validly_signed_token_names_its_issuer_and_jti_for_the_log(
    issuer: TrustedIssuer, tmp_path: Path, claims: dict[str, Any], reason: str
) -> None:
    # The signature holds, so the log may say which issuer's token, and which one, was refused.
    tenanted = dataclasses.replace(issuer, tenants=("north",))
    settings = Settings(public_base_url=BASE, auth_issuers=(tenanted,), fhir_allowlist=(ISS + "/fhir",),
                        auth_leeway_seconds=LEEWAY, auth_max_token_lifetime_seconds=LIFETIME)
    verifier = Verifier(settings, migrated_store(tmp_path / "db.sqlite3"), clock=lambda: float(NOW))
    with pytest.raises(AuthError) as refused:
        verifier.verify(_token(**{"tenant": "north", "jti": "the-jti", **claims}), AUDIENCE)
    assert (refused.value.reason, refused.value.iss, refused.value.jti) == (reason, ISS, "the-jti")


# --------------------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("claims", [
    {"exp": 10**400}, {"iat": 10**400}, {"nbf": 10**400}, {"exp": -(10**400)},
    {"exp": MAX_EPOCH_SECONDS + 1}, {"iat": -1}, {"exp": "1800000300"}, {"exp": True},
    {"jti": ""},  # no jti to remember: replay could not be caught
])
def test_out_of_range_or_wrongly_typed_times_are_malformed(
    verify: Callable[[str], str], claims: dict[str, Any]
) -> None:
    assert verify(_token(**claims)) == "malformed"


@pytest.mark.parametrize("claims", [{"exp": MAX_EPOCH_SECONDS}, {"nbf": 0}])
def test_times_at_the_edges_of_the_range_are_numbers_not_malformed(
    verify: Callable[[str], str], claims: dict[str, Any]
) -> None:
    # Judged on what they say (a lifetime far too long, a start long past), not refused as unreadable.
    assert verify(_token(**claims)) != "malformed"


def test_a_huge_exp_through_the_app_is_401_and_leaves_the_jti_usable(
    make_app: Callable[..., Flask], issuer: TrustedIssuer
) -> None:
    """A validly signed 400-digit exp once raised OverflowError: a 500."""
    app = make_app(public_base_url=BASE, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",))
    verifier: Verifier = app.extensions["lumbar_cds.verifier"]
    verifier.clock = lambda: float(NOW)
    client = app.test_client()
    for claim in ("exp", "iat"):
        jti = str(uuid.uuid4())
        huge = _token(jti=jti, **{claim: 10**400})
        response = client.get("/cds-services", headers={"Authorization": f"Bearer {huge}"})
        assert response.status_code == 401, claim
        # The refusal did not use up the jti: the issuer's next, valid token with it is accepted.
        assert client.get("/cds-services", headers={"Authorization": f"Bearer {_token(jti=jti)}"}).status_code == 200


# --------------------------------------------------------------------------- what a refusal logs


def test_a_refusal_logs_neither_the_unverified_iss_and_jti_nor_an_unrouted_path(
    make_app: Callable[..., Flask], issuer: TrustedIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(public_base_url=BASE, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",))
    app.extensions["lumbar_cds.verifier"].clock = lambda: float(NOW)
    client = app.test_client()
    forged = _token(key=ec.generate_private_key(ec.SECP384R1()), jti="forged-jti-4b1d")  # bad signature
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert client.get("/Patient/alice-smith-dob-1970-01-01",
                          headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert client.post("/cds-services/alice-smith-dob-1970-01-01", json={}).status_code == 401
    assert "alice" not in caplog.text and "forged-jti-4b1d" not in caplog.text and ISS not in caplog.text
    assert "reason=bad-signature iss=None jti=None GET (no route)" in caplog.text
    assert "reason=missing-header iss=None jti=None POST /cds-services/<service_id>" in caplog.text

    # Once the signature verifies, its iss and jti are the issuer's words and are logged.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        expired = _token(jti="verified-jti-77", iat=NOW - 1000, exp=NOW - 1000 + LIFETIME)
        assert client.get("/cds-services", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert f"reason=expired iss='{ISS}' jti='verified-jti-77'" in caplog.text


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("  Bearer\tabc", None),
    ("Basic abc", None), ("Bearer", None), ("Bearer   ", None), ("", None), (None, None),
])
def test_the_bearer_token_is_read_after_the_scheme_and_spaces(header: str | None, token: str | None) -> None:
    if token is None:
        with pytest.raises(AuthError):
            bearer_token(header)
    else:
        assert bearer_token(header) == token


def _part(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


PAYLOAD = {"iss": ISS, "aud": AUDIENCE, "iat": NOW, "exp": NOW + LIFETIME, "jti": "j-1"}


@pytest.mark.parametrize(("header", "payload", "reason"), [
    ({"alg": "ES384", "kid": KID, "crit": ["exp"]}, PAYLOAD, "malformed"),  # an extension we would have to honour
    ({"alg": "ES384", "kid": KID, "b64": False}, PAYLOAD, "malformed"),  # an unencoded payload (RFC 7797)
    (["alg", "ES384"], PAYLOAD, "malformed"), ({"alg": "ES384", "kid": KID}, ["not", "an", "object"], "malformed"),
    ({"alg": "ES384", "kid": 5}, PAYLOAD, "missing-kid"), ({"alg": "ES384", "kid": ""}, PAYLOAD, "missing-kid"),
])
def test_a_token_the_service_cannot_read_safely_is_refused_before_any_key_is_sought(
    verify: Callable[[str], str], header: Any, payload: Any, reason: str
) -> None:
    assert verify(f"{_part(header)}.{_part(payload)}.{_part('signature')}") == reason


@pytest.mark.parametrize("parts", [2, 4])
def test_a_token_of_other_than_three_parts_is_malformed(verify: Callable[[str], str], parts: int) -> None:
    token = _token().split(".")
    assert verify(".".join((token * 2)[:parts])) == "malformed"


def _token_of_length(length: int) -> str:
    """A valid token exactly `length` characters long: a filler claim and a filler header field are grown
    until it fits (base64url skips some lengths, so the two together reach every one)."""
    def signed(payload_pad: int, header_pad: int) -> str:
        payload = {"iss": ISS, "aud": AUDIENCE, "iat": NOW, "exp": NOW + LIFETIME, "jti": str(uuid.uuid4()),
                   "filler": "f" * payload_pad}
        return jwt.encode(payload, KEY, algorithm="ES384", headers={"kid": KID, "x": "h" * header_pad})

    start = max(0, (length - len(signed(0, 0))) * 3 // 4 - 8)  # each 3 filler characters add 4 to the token
    for payload_pad in range(start, start + 16):
        for header_pad in range(4):
            if len(token := signed(payload_pad, header_pad)) == length:
                return token
    raise AssertionError(f"no token of {length} characters")


def test_a_token_of_exactly_the_size_cap_is_verified_and_one_character_more_is_not(
    verify: Callable[[str], str]
) -> None:
    assert verify(_token_of_length(MAX_TOKEN_CHARS)) == "ok"
    assert verify(_token_of_length(MAX_TOKEN_CHARS + 1)) == "malformed"


@pytest.mark.parametrize(("base", "audience"), [
    ("https://cds.example.org/lumbar-X/", "https://cds.example.org/lumbar-X/cds-services/a"),
    ("https://cds.example.org", "https://cds.example.org/cds-services/a"),
])
def test_the_audience_is_the_public_base_url_with_its_path_and_no_doubled_slash(
    issuer: TrustedIssuer, tmp_path: Path, base: str, audience: str
) -> None:
    settings = Settings(public_base_url=base, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",))
    verifier = Verifier(settings, migrated_store(tmp_path / "db.sqlite3"))
    assert verifier.audience_for("/cds-services/a") == audience


def test_a_jti_is_remembered_for_as_long_as_its_token_is_accepted(issuer: TrustedIssuer, tmp_path: Path) -> None:
    # Accepted until exp + leeway, so a replay at the last accepted second must still be caught.
    settings = Settings(public_base_url=BASE, auth_issuers=(issuer,), fhir_allowlist=(ISS + "/fhir",),
                        auth_leeway_seconds=LEEWAY, auth_max_token_lifetime_seconds=LIFETIME)
    now = [float(NOW)]
    verifier = Verifier(settings, migrated_store(tmp_path / "db.sqlite3"), clock=lambda: now[0])
    token = _token()
    verifier.verify(token, AUDIENCE)
    now[0] = NOW + LIFETIME + LEEWAY - 1
    with pytest.raises(AuthError) as refused:
        verifier.verify(token, AUDIENCE)
    assert refused.value.reason == "replayed-jti"
