"""The TOML settings file (LUMBAR_CDS_CONFIG), environment overrides, and refusal of unsafe auth settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_hooks.ops.gunicorn_conf import bind_hosts
from cds_hooks.security.auth import validate_auth_settings
from cds_hooks.settings.config import Settings, SettingsError, TrustedIssuer
from tests.docs import doc


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG", "PUBLIC_BASE_URL", "AUTH_ALGORITHMS", "AUTH_LEEWAY_SECONDS", "AUTH_JWKS_CACHE_SECONDS",
                 "DATA_DIR"):
        monkeypatch.delenv(f"LUMBAR_CDS_{name}", raising=False)


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "lumbar-cds.toml"
    path.write_text(text)
    monkeypatch.setenv("LUMBAR_CDS_CONFIG", str(path))
    return path


def test_the_documented_example_deployment_loads_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = re.search(r"```toml\n(.*?)```", doc("security.md"), re.S)
    assert example is not None
    _config(tmp_path, monkeypatch, example.group(1))
    settings = Settings.from_env()
    validate_auth_settings(settings)
    assert settings.auth_enabled
    assert settings.public_base_url == "https://cds.example-hospital.org/lumbar"
    assert settings.data_dir == Path("/var/lib/lumbar-cds")
    assert [i.iss for i in settings.auth_issuers] == [
        "https://fhir.example-hospital.org/interconnect-fhir-oauth/api/FHIR/R4", "https://sandbox.cds-hooks.org"]
    assert settings.auth_issuers[0].tenants is None
    assert settings.auth_issuers[1].jwks == "https://sandbox.cds-hooks.org/.well-known/jwks.json"


def test_file_values_relative_paths_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ehr.json").write_text('{"keys": []}')
    _config(tmp_path, monkeypatch, """
data_dir = "state"
public_base_url = "https://from-file.example"
fhir_allowlist = ["https://ehr.example.org/fhir"]
[auth]
algorithms = ["ES384", "ES256"]
leeway_seconds = 30
[[auth.issuers]]
iss = "https://ehr.example.org"
jwks = "keys/ehr.json"
jku = ["https://ehr.example.org/jwks"]
""")
    monkeypatch.setenv("LUMBAR_CDS_PUBLIC_BASE_URL", "https://from-env.example")
    settings = Settings.from_env(auth_leeway_seconds=5)
    assert settings.data_dir == tmp_path / "state"
    assert settings.public_base_url == "https://from-env.example"  # the environment wins over the file
    assert settings.auth_leeway_seconds == 5  # and explicit overrides win over both
    assert settings.auth_algorithms == ("ES384", "ES256")
    assert settings.auth_issuers == (TrustedIssuer(
        "https://ehr.example.org", jwks=str(tmp_path / "keys" / "ehr.json"), jku=("https://ehr.example.org/jwks",)),)
    validate_auth_settings(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data_dri = 'x'", "unknown setting 'data_dri'"),
        ("[auth]\nleeway = 5", "unknown setting 'auth.leeway'"),
        ("[auth]\nleeway_seconds = 'soon'", "auth.leeway_seconds"),
        ("[[auth.issuers]]\niss = 'https://a.example'\njwks_url = 'x'", "auth.issuers.0.jwks_url"),
        ("public_base_url = ", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_key_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    path = _config(tmp_path, monkeypatch, text)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert message in str(refused.value) and str(path) in str(refused.value)


def test_missing_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMBAR_CDS_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.from_env()


def test_bad_env_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMBAR_CDS_AUTH_LEEWAY_SECONDS", "a minute")
    with pytest.raises(SettingsError, match="LUMBAR_CDS_AUTH_LEEWAY_SECONDS"):
        Settings.from_env()


SANDBOX = TrustedIssuer("https://sandbox.cds-hooks.org", jwks="https://sandbox.cds-hooks.org/.well-known/jwks.json")


def _with(issuer: TrustedIssuer, **more: object) -> Settings:
    return Settings(public_base_url="https://a.example", auth_issuers=(issuer,), **more)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(auth_algorithms=("ES384", "HS256")), "HMAC"),
        (Settings(auth_algorithms=("none",)), "'none'"),
        (Settings(auth_algorithms=()), "non-empty"),
        (Settings(auth_leeway_seconds=-1), "negative"),
        (Settings(auth_issuers=(SANDBOX,)), "public_base_url"),
        (Settings(public_base_url="cds.example.org", auth_issuers=(SANDBOX,)), "LUMBAR_CDS_PUBLIC_BASE_URL"),
        (Settings(public_base_url="https://a.example", auth_issuers=(SANDBOX, SANDBOX)), "listed once"),
        (_with(TrustedIssuer("https://x.example")), "trusted issuer 'https://x.example': give its JWK Set"),
        (_with(TrustedIssuer("https://x.example", jwks="http://x.example/jwks")), "must be https"),
        (_with(TrustedIssuer("https://x.example", jku=("http://x.example/jwks",))), "must be an https"),
        (_with(TrustedIssuer("https://x.example", jwks="/no/such/jwks.json")), "does not exist"),
        (_with(TrustedIssuer("https://x.example", jwks=SANDBOX.jwks, tenants=("",))), "tenants"),
        (Settings(auth_max_token_lifetime_seconds=0), "auth_max_token_lifetime_seconds"),
        (Settings(public_base_url="https://a.example/cds?x=1", auth_issuers=(SANDBOX,)), "LUMBAR_CDS_PUBLIC_BASE_URL"),
        (Settings(public_base_url="https://a.example/cds#top", auth_issuers=(SANDBOX,)), "LUMBAR_CDS_PUBLIC_BASE_URL"),
        (Settings(public_base_url="https:///cds", auth_issuers=(SANDBOX,)), "LUMBAR_CDS_PUBLIC_BASE_URL"),
        # With issuers, the FHIR servers must be named: by default any loopback port would be reachable.
        # The operator is told both ways to set it: the environment variable and the settings-file key.
        (_with(SANDBOX), "LUMBAR_CDS_FHIR_ALLOWLIST (fhir_allowlist)"),
        (_with(SANDBOX, fhir_allow_loopback=False), "LUMBAR_CDS_FHIR_ALLOW_LOOPBACK=1 (fhir_allow_loopback)"),
    ],
)
def test_unsafe_or_incomplete_auth_settings_are_refused(settings: Settings, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        validate_auth_settings(settings)
    assert message in str(refused.value)


def test_loopback_http_jwks_is_allowed_for_local_key_servers() -> None:
    issuer = TrustedIssuer("https://x.example", jwks="http://127.0.0.1:8099/jwks.json", jku=("http://[::1]:1/j",))
    validate_auth_settings(Settings(public_base_url="http://127.0.0.1:8080", auth_issuers=(issuer,),
                                    fhir_allow_loopback=True))
    # No caching of JWK Sets (every token fetches its key set) is allowed, a negative time is not.
    validate_auth_settings(Settings(public_base_url="http://127.0.0.1:8080", auth_issuers=(issuer,),
                                    fhir_allow_loopback=True, auth_jwks_cache_seconds=0))
    with pytest.raises(SettingsError, match="negative"):
        validate_auth_settings(Settings(public_base_url="http://127.0.0.1:8080", auth_issuers=(issuer,),
                                        fhir_allow_loopback=True, auth_jwks_cache_seconds=-1))


def test_gunicorn_bind_strings() -> None:
    assert bind_hosts(["127.0.0.1:8000", "[::1]:8000", "localhost", "0.0.0.0:80", "unix:/run/x.sock", ":8080"]) == [
        "127.0.0.1", "::1", "localhost", "0.0.0.0", ""]


def test_the_smallest_allowed_leeway_and_token_lifetime() -> None:
    # No clock leeway at all, and tokens of one second, are strict but valid; one less is refused.
    issuer = TrustedIssuer("https://x.example", jwks="http://127.0.0.1:8099/jwks.json")
    base = {"public_base_url": "http://127.0.0.1:8080", "auth_issuers": (issuer,), "fhir_allow_loopback": True}
    validate_auth_settings(Settings(**base, auth_leeway_seconds=0, auth_max_token_lifetime_seconds=1))  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="negative"):
        validate_auth_settings(Settings(**base, auth_leeway_seconds=-1))  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="at least 1"):
        validate_auth_settings(Settings(**base, auth_max_token_lifetime_seconds=0))  # type: ignore[arg-type]
