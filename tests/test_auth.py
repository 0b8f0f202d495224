"""CDS Hooks JWT authentication through the real app, with keys generated here and real HTTP for JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.app import create_app
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.security.auth import AuthError, Verifier
from cds_hooks.settings.config import Settings, TrustedIssuer
from tests.conftest import REPO, migrated_store

BASE = "https://cds.example.org/lumbar"
SANDBOX = "https://sandbox.cds-hooks.org"
EPIC = "https://fhir.example-hospital.org/interconnect-fhir-oauth/api/FHIR/R4"
SELECT = "/cds-services/lumbar-pathway-order-select"
# With trusted issuers the service must be told which FHIR servers it may query (start-up refuses otherwise).
FHIR = ("https://fhir.example-hospital.org/fhir/r4",)
SPEC = json.loads((Path(__file__).parent / "data" / "cds-hooks-spec-jwt-example.json").read_text())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = private_key.public_key()
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    return {**json.loads(algorithm.to_jwk(public)), "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class Client:
    """A CDS Client (EHR) that signs its own tokens."""

    iss: str
    key: Any
    kid: str
    alg: str

    def claims(self, path: str = "/cds-services", now: float | None = None, **extra: Any) -> dict[str, Any]:
        now = time.time() if now is None else now
        claims = {"iss": self.iss, "aud": BASE + path, "iat": int(now), "exp": int(now) + 300,
                  "jti": str(uuid.uuid4())}
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, path: str = "/cds-services", headers: dict[str, Any] | None = None, key: Any = None,
              now: float | None = None, **extra: Any) -> str:
        return jwt.encode(self.claims(path, now, **extra), key or self.key, algorithm=self.alg,
                          headers={"kid": self.kid, **(headers or {})})

    def jwk(self) -> dict[str, Any]:
        return _jwk(self.key, self.kid, self.alg)


@pytest.fixture(scope="session")
def sandbox() -> Client:
    return Client(SANDBOX, ec.generate_private_key(ec.SECP384R1()), "es384-1", "ES384")


@pytest.fixture(scope="session")
def epic() -> Client:
    return Client(EPIC, rsa.generate_private_key(public_exponent=65537, key_size=2048), "rs384-1", "RS384")


def _write_jwks(path: Path, *keys: dict[str, Any]) -> str:
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


@pytest.fixture(scope="module")
def issuers(tmp_path_factory: pytest.TempPathFactory, sandbox: Client, epic: Client) -> tuple[TrustedIssuer, ...]:
    tmp_path = tmp_path_factory.mktemp("jwks")
    return (
        TrustedIssuer(SANDBOX, jwks=_write_jwks(tmp_path / "sandbox.json", sandbox.jwk())),
        TrustedIssuer(EPIC, jwks=_write_jwks(tmp_path / "epic.json", epic.jwk()), tenants=("hospital-a",)),
    )


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory, issuers: tuple[TrustedIssuer, ...]) -> Flask:
    """One app for the module (every token has a fresh jti, so the tests cannot interfere)."""
    data_dir = tmp_path_factory.mktemp("data")
    return create_app(Settings(data_dir=data_dir, rules_dir=REPO / "rules", public_base_url=BASE, auth_issuers=issuers,
                               fhir_allowlist=FHIR, auto_migrate=True))


@pytest.fixture
def client(authed: Flask) -> Iterator[FlaskClient]:
    with authed.test_client() as c:
        yield c


@pytest.fixture
def premature(today: date) -> dict[str, Any]:
    return load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today).request


def _call(client: FlaskClient, path: str, token: str | None = None, body: Any = None,
          headers: dict[str, str] | None = None) -> Any:
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    if body is None:
        return client.get(path, headers=headers)
    return client.post(path, data=orjson.dumps(body), content_type="application/json", headers=headers)


# --- tokens that pass --------------------------------------------------------------------------------


def test_valid_tokens_open_discovery_service_and_feedback(
    client: FlaskClient, sandbox: Client, epic: Client, premature: dict[str, Any]
) -> None:
    assert _call(client, "/cds-services", sandbox.token()).status_code == 200
    response = _call(client, SELECT, sandbox.token(SELECT), premature)
    assert response.status_code == 200
    card = response.get_json()["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                              "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    # Epic-style: RS384, with a tenant and the extra sub and nbf claims CDS Hooks 2.0 does not define.
    token = epic.token(SELECT + "/feedback", tenant="hospital-a", sub="epic-client-id", nbf=int(time.time()) - 300)
    response = _call(client, SELECT + "/feedback", token, feedback)
    assert response.status_code == 200 and response.get_json()["stored"] == 1


def test_preflight_probes_and_metrics_need_no_token(client: FlaskClient) -> None:
    preflight = client.options(SELECT, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    # Everything else needs one, even a path that does not exist (no route probing).
    assert client.get("/no-such-path").status_code == 401


def test_a_cards_basis_page_opens_without_a_token_at_the_public_url(
    client: FlaskClient, sandbox: Client, premature: dict[str, Any]
) -> None:
    """A clinician's click on the card's basis link carries no JWT: the link's unguessable token is the
    credential, and the link points at the configured public URL, never at the Host header."""
    card = _call(client, SELECT, sandbox.token(SELECT), premature, headers={"Host": "evil.example"}).get_json()
    link = card["cards"][0]["links"][0]
    assert link["url"].startswith(BASE + "/basis/")
    page = client.get(link["url"].removeprefix(BASE))
    assert page.status_code == 200 and b"What was checked" in page.data
    assert client.get("/basis/" + "A" * 43).status_code == 404  # no token, but no way in either


def test_leeway_tolerates_small_clock_skew(client: FlaskClient, sandbox: Client) -> None:
    now = time.time()
    assert _call(client, "/cds-services", sandbox.token(iat=int(now) + 50, exp=int(now) - 50)).status_code == 200


def test_aud_may_be_a_list(client: FlaskClient, sandbox: Client) -> None:
    token = sandbox.token(aud=["https://elsewhere.example/cds-services", BASE + "/cds-services"])
    assert _call(client, "/cds-services", token).status_code == 200


def test_the_specifications_example_token_verifies(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """CDS Hooks 2.0 §Trusting CDS Clients, Example: its ES384 token, JWK Set, aud and tenant."""
    issuer = TrustedIssuer(
        "https://fhir-ehr.example.com/", jwks=_write_jwks(tmp_path / "spec.json", *SPEC["jwks"]["keys"]),
        jku=("https://fhir-ehr.example.com/jwk_uri",), tenants=("2ddd6c3a-8e9a-44c6-a305-52111ad302a2",),
    )
    # The example token lives from 2011 to 2015: far longer than this deployment accepts by default.
    app = make_app(public_base_url="https://cds.example.org", auth_issuers=(issuer,), fhir_allowlist=FHIR,
                   auth_max_token_lifetime_seconds=200_000_000)
    verifier: Verifier = app.extensions["lumbar_cds.verifier"]
    verifier.clock = lambda: 1311280970.0  # the token's iat; it expired in 2015
    with app.test_client() as client:
        response = _call(client, "/cds-services/some-service", SPEC["token"], {})
    # Authentication passed; this service simply has no "some-service".
    assert response.status_code == 404
    verifier.clock = lambda: 1422568860.0 + 60  # exp + leeway
    with pytest.raises(AuthError) as refused:
        verifier.verify(SPEC["token"], "https://cds.example.org/cds-services/some-service")
    assert refused.value.reason == "expired"


def test_replay_is_refused_by_another_app_on_the_same_database(
    make_app: Callable[..., Flask], issuers: tuple[TrustedIssuer, ...], sandbox: Client
) -> None:
    """Two apps stand for two gunicorn workers: the jti store is the database, not process memory."""
    token = sandbox.token()
    first = make_app(public_base_url=BASE, auth_issuers=issuers, fhir_allowlist=FHIR)
    second = make_app(public_base_url=BASE, auth_issuers=issuers, fhir_allowlist=FHIR)
    assert first.extensions["lumbar_cds.store"] is not second.extensions["lumbar_cds.store"]
    assert _call(first.test_client(), "/cds-services", token).status_code == 200
    assert _call(second.test_client(), "/cds-services", token).status_code == 401


# --- every rejection path ----------------------------------------------------------------------------


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _alg_none(c: Client) -> str:
    return _unsigned({"alg": "none", "typ": "JWT", "kid": c.kid}, c.claims()) + "."


def _hs256_with_public_key(c: Client) -> str:
    """The classic key-confusion forgery: HMAC keyed with the client's published public key."""
    public_pem = c.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": c.kid}, c.claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered(c: Client) -> str:
    header, _, signature = c.token().split(".")
    return ".".join([header, _b64(json.dumps(c.claims(jti="chosen-by-attacker")).encode()), signature])


REJECTIONS: dict[str, tuple[str, Callable[[Client], str]]] = {
    "wrong issuer": ("unknown-issuer", lambda c: c.token(iss="https://evil.example")),
    "unknown kid": ("unknown-kid", lambda c: c.token(headers={"kid": "not-in-jwks"})),
    "bad signature (other key)": (
        "bad-signature", lambda c: c.token(key=ec.generate_private_key(ec.SECP384R1()))),
    "bad signature (payload changed)": ("bad-signature", _tampered),
    "alg none": ("alg-not-allowed", _alg_none),
    "HS256 with the public key as secret": ("alg-not-allowed", _hs256_with_public_key),
    "ES256 not configured": ("alg-not-allowed", lambda c: jwt.encode(
        c.claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": c.kid})),
    "wrong aud": ("wrong-audience", lambda c: c.token("/cds-services/another-service")),
    "expired": ("expired", lambda c: c.token(iat=int(time.time()) - 400, exp=int(time.time()) - 61)),
    "iat in the future": ("iat-in-future", lambda c: c.token(iat=int(time.time()) + 120)),
    "nbf in the future": ("not-yet-valid", lambda c: c.token(nbf=int(time.time()) + 120)),
    "no jti": ("missing-claim", lambda c: c.token(jti=None)),
    "no kid": ("missing-kid", lambda c: jwt.encode(c.claims(), c.key, algorithm=c.alg)),
    "not a JWT": ("malformed", lambda c: "not.a.jwt"),
}


def _assert_refused(
    caplog: pytest.LogCaptureFixture, client: FlaskClient, reason: str, token: str | None,
    headers: dict[str, str] | None = None, path: str = "/cds-services",
) -> None:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = _call(client, path, token, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # The body says nothing about which check failed.
    assert response.get_json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": "Unauthorized"}]}
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unauthorized ")]
    assert len(refusals) == 1 and f"reason={reason} " in refusals[0], refusals
    if token:
        for part in token.split("."):
            assert len(part) < 8 or part not in caplog.text  # no piece of the token is logged


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_each_rejection_is_401_and_logs_only_the_reason(
    client: FlaskClient, sandbox: Client, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    reason, make_token = REJECTIONS[case]
    _assert_refused(caplog, client, reason, make_token(sandbox))


def test_rsa_key_cannot_be_used_with_an_ec_algorithm(
    client: FlaskClient, epic: Client, caplog: pytest.LogCaptureFixture
) -> None:
    forged = jwt.encode(epic.claims(tenant="hospital-a"), ec.generate_private_key(ec.SECP384R1()),
                        algorithm="ES384", headers={"kid": epic.kid})
    _assert_refused(caplog, client, "key-alg-mismatch", forged)


def test_tenant_outside_the_allow_list(client: FlaskClient, epic: Client, caplog: pytest.LogCaptureFixture) -> None:
    _assert_refused(caplog, client, "tenant-not-allowed", epic.token(tenant="hospital-b"))
    _assert_refused(caplog, client, "tenant-not-allowed", epic.token())


def test_replayed_jti(client: FlaskClient, sandbox: Client, caplog: pytest.LogCaptureFixture) -> None:
    token = sandbox.token()
    assert _call(client, "/cds-services", token).status_code == 200
    _assert_refused(caplog, client, "replayed-jti", token)
    assert f"jti='{json.loads(base64.urlsafe_b64decode(token.split('.')[1] + '==='))['jti']}'" in caplog.text


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_non_bearer_header(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    _assert_refused(caplog, client, "missing-header", None, headers=headers)


def test_host_header_does_not_choose_the_audience(
    client: FlaskClient, sandbox: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = sandbox.token(aud="https://evil.example/cds-services")
    _assert_refused(caplog, client, "wrong-audience", token, headers={"Host": "evil.example"})


# --- JWK Sets over HTTP ------------------------------------------------------------------------------


@dataclass
class JwksServer:
    """A real HTTP server on 127.0.0.1 that serves JWK Sets and counts every request by path."""

    documents: dict[str, Any] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            document = state.documents.get(self.path)
            if isinstance(document, tuple):  # (status, headers)
                self.send_response(document[0])
                for name, value in document[1].items():
                    self.send_header(name, value)
                self.end_headers()
                return
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _verifier(tmp_path: Path, *issuers: TrustedIssuer, clock: list[float]) -> Verifier:
    settings = Settings(public_base_url=BASE, auth_issuers=issuers, fhir_allowlist=FHIR)
    return Verifier(settings, migrated_store(tmp_path / "db.sqlite3"), clock=lambda: clock[0])


def test_jwks_url_is_cached_and_refreshed_on_unknown_kid_at_most_every_30_s(
    tmp_path: Path, jwks_server: JwksServer, sandbox: Client
) -> None:
    rotated = Client(SANDBOX, ec.generate_private_key(ec.SECP384R1()), "es384-2", "ES384")
    jwks_server.documents["/jwks.json"] = {"keys": [sandbox.jwk()]}
    clock = [1_800_000_000.0]
    verifier = _verifier(tmp_path, TrustedIssuer(SANDBOX, jwks=jwks_server.url("/jwks.json")), clock=clock)
    audience = BASE + "/cds-services"

    def verify(client: Client) -> str:
        try:
            verifier.verify(client.token(now=clock[0]), audience)
            return "ok"
        except AuthError as exc:
            return exc.reason

    assert verify(sandbox) == "ok" and jwks_server.hits["/jwks.json"] == 1
    assert verify(sandbox) == "ok" and jwks_server.hits["/jwks.json"] == 1  # cached
    jwks_server.documents["/jwks.json"] = {"keys": [rotated.jwk()]}  # the client rotates its key
    assert verify(rotated) == "unknown-kid" and jwks_server.hits["/jwks.json"] == 1  # loaded < 30 s ago
    clock[0] += 31
    assert verify(rotated) == "ok" and jwks_server.hits["/jwks.json"] == 2  # unknown kid: reload
    bogus = Client(SANDBOX, sandbox.key, "made-up-kid", "ES384")
    for _ in range(5):
        assert verify(bogus) == "unknown-kid"
    assert jwks_server.hits["/jwks.json"] == 2  # a flood of unknown kids costs at most one load per 30 s
    clock[0] += 600
    assert verify(rotated) == "ok" and jwks_server.hits["/jwks.json"] == 3  # TTL expired: reload


def test_jku_is_fetched_only_from_the_allow_list(tmp_path: Path, jwks_server: JwksServer, sandbox: Client) -> None:
    jwks_server.documents["/allowed.json"] = {"keys": [sandbox.jwk()]}
    jwks_server.documents["/attacker.json"] = {"keys": [sandbox.jwk()]}
    clock = [time.time()]
    verifier = _verifier(tmp_path, TrustedIssuer(SANDBOX, jku=(jwks_server.url("/allowed.json"),)), clock=clock)
    audience = BASE + "/cds-services"
    claims = verifier.verify(sandbox.token(headers={"jku": jwks_server.url("/allowed.json")}), audience)
    assert claims.iss == SANDBOX and jwks_server.hits["/allowed.json"] == 1
    with pytest.raises(AuthError) as refused:
        verifier.verify(sandbox.token(headers={"jku": jwks_server.url("/attacker.json")}), audience)
    assert refused.value.reason == "jku-not-allowed"
    assert jwks_server.hits["/attacker.json"] == 0


def test_where_keys_are_looked_for_with_and_without_a_jku(
    tmp_path: Path, jwks_server: JwksServer, sandbox: Client
) -> None:
    other = Client(SANDBOX, ec.generate_private_key(ec.SECP384R1()), "es384-other", "ES384")
    jwks_server.documents["/jwks.json"] = {"keys": [other.jwk()]}
    jwks_server.documents["/extra.json"] = {"keys": [sandbox.jwk()]}
    audience = BASE + "/cds-services"

    def verify(issuer: TrustedIssuer, **headers: str) -> str:
        try:
            verifier = _verifier(tmp_path / str(len(list(tmp_path.iterdir()))), issuer, clock=[time.time()])
            verifier.verify(sandbox.token(headers=headers), audience)
            return "ok"
        except AuthError as refused:
            return refused.reason

    both = TrustedIssuer(SANDBOX, jwks=jwks_server.url("/jwks.json"), jku=(jwks_server.url("/extra.json"),))
    # The key is only in the allowed jku set the token names: looked for after the issuer's own set.
    assert verify(both, jku=jwks_server.url("/extra.json")) == "ok"
    assert verify(both) == "unknown-kid"  # no jku: only the issuer's own set
    # An issuer known only by its jku sets: a token naming none is looked up in them.
    assert verify(TrustedIssuer(SANDBOX, jku=(jwks_server.url("/extra.json"),))) == "ok"
    # A jku equal to the issuer's own JWK Set URL is allowed; a jku equal to a JWK Set *file* is not a URL.
    jwks_server.documents["/own.json"] = {"keys": [sandbox.jwk()]}
    assert verify(TrustedIssuer(SANDBOX, jwks=jwks_server.url("/own.json")), jku=jwks_server.url("/own.json")) == "ok"
    on_disk = _write_jwks(tmp_path / "own.json", sandbox.jwk())
    assert verify(TrustedIssuer(SANDBOX, jwks=on_disk), jku=on_disk) == "jku-not-allowed"


def test_jku_not_allowed_through_the_app(
    client: FlaskClient, jwks_server: JwksServer, sandbox: Client, caplog: pytest.LogCaptureFixture
) -> None:
    jwks_server.documents["/jwks.json"] = {"keys": [sandbox.jwk()]}
    token = sandbox.token(headers={"jku": jwks_server.url("/jwks.json")})
    _assert_refused(caplog, client, "jku-not-allowed", token)
    assert sum(jwks_server.hits.values()) == 0


def test_redirects_and_errors_are_not_followed(tmp_path: Path, jwks_server: JwksServer, sandbox: Client) -> None:
    jwks_server.documents["/moved.json"] = (302, {"Location": jwks_server.url("/elsewhere.json")})
    jwks_server.documents["/elsewhere.json"] = {"keys": [sandbox.jwk()]}
    jwks_server.documents["/broken.json"] = (500, {})
    clock = [time.time()]
    for path in ("/moved.json", "/broken.json"):
        verifier = _verifier(tmp_path, TrustedIssuer(SANDBOX, jwks=jwks_server.url(path)), clock=clock)
        with pytest.raises(AuthError) as refused:
            verifier.verify(sandbox.token(), BASE + "/cds-services")
        assert refused.value.reason == "jwks-unavailable"
        assert jwks_server.hits[path] == 1
    assert jwks_server.hits["/elsewhere.json"] == 0


def test_a_jwk_that_names_another_alg_is_not_used(tmp_path: Path, epic: Client) -> None:
    jwk = {**epic.jwk(), "alg": "RS256"}  # the client published this key for RS256 only
    issuer = TrustedIssuer(EPIC, jwks=_write_jwks(tmp_path / "jwks.json", jwk))
    verifier = _verifier(tmp_path, issuer, clock=[time.time()])
    with pytest.raises(AuthError) as refused:
        verifier.verify(epic.token(), BASE + "/cds-services")
    assert refused.value.reason == "key-alg-mismatch"


def test_non_finite_times_are_malformed(client: FlaskClient, sandbox: Client, caplog: pytest.LogCaptureFixture) -> None:
    """json accepts Infinity (and NaN): an exp of Infinity must not make a token immortal."""
    header = {"alg": sandbox.alg, "typ": "JWT", "kid": sandbox.kid}
    signing_input = _unsigned(header, {**sandbox.claims(), "exp": float("inf")})
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA384).sign(signing_input.encode(), sandbox.key)
    _assert_refused(caplog, client, "malformed", f"{signing_input}.{_b64(signature)}")
