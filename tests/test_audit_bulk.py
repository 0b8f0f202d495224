"""`lumbar-cds audit` on a directory, on a manifest, on gzip files, and against a live sekmet-fhir with
SMART Backend Services and a Group export: the same counts for the same data. Plus the client's refusals:
a server off the allow-list, and no credentials where the server asks for them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_hooks.audit.bulk_client import BulkClient, BulkError, ExportRequest
from cds_hooks.audit.run import AuditRequest, run_audit
from cds_hooks.audit.synth import generate
from cds_hooks.pathway.rules import Rules
from cds_hooks.settings.config import Settings
from tests.conftest import REPO
from tests.sekmet import TOKEN, sekmet_server

PERIOD = (date(2025, 1, 1), date(2025, 12, 31))
CLIENT = "lumbar-audit-test"


def _settings(**extra: Any) -> Settings:
    return Settings(rules_dir=REPO / "rules", **extra)


def _audit(out: Path, settings: Settings | None = None, **kwargs: Any) -> dict[str, Any]:
    request = AuditRequest(out=out, period=PERIOD, min_cell=1, progress=False, workers=2, **kwargs)
    return run_audit(request, settings or _settings())


def counts(report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on how the data arrived."""
    orders = report["orders"]
    return {
        "orders": {k: v for k, v in orders.items() if not isinstance(v, list)},
        "byRule": orders["byRule"], "byMonth": orders["byMonth"], "byCategory": orders["byCategory"],
        "redFlags": report["redFlags"], "patients": report["data"]["patients"],
        "measures": [{k: v for k, v in m.items()} for m in report["measures"]],
    }


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory, rules: Rules) -> Path:
    out = tmp_path_factory.mktemp("bulk") / "export"
    generate(rules, 40, out, seed=7, visits_per_year=2, years=1)
    return out


@pytest.fixture(scope="module")
def from_directory(population: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    (population / "manifest.json").rename(population.parent / "manifest.json")  # a bare directory
    try:
        return _audit(tmp_path_factory.mktemp("dir"), source=population)
    finally:
        (population.parent / "manifest.json").rename(population / "manifest.json")


def test_directory_manifest_and_gzip_give_the_same_counts(
    from_directory: dict[str, Any], population: Path, tmp_path: Path, rules: Rules,
) -> None:
    assert isinstance(from_directory["orders"]["total"], int) and from_directory["orders"]["total"] > 10
    manifest = population.parent / "elsewhere.json"
    doc = json.loads((population / "manifest.json").read_text())
    doc["output"] = [{**o, "url": f"export/{o['url']}"} for o in doc["output"]]  # relative to the manifest
    manifest.write_text(json.dumps(doc))
    assert counts(_audit(tmp_path / "m", source=manifest)) == counts(from_directory)
    gz = tmp_path / "gz"
    generate(rules, 40, gz, seed=7, gz=True, visits_per_year=2, years=1)
    assert counts(_audit(tmp_path / "g", source=gz / "manifest.json")) == counts(from_directory)


def _load(base: str, export: Path) -> list[str]:
    """Every resource of the export into the server (transactions of PUTs); the patient ids."""
    resources = [orjson.loads(line) for path in sorted(export.glob("*.ndjson"))
                 for line in path.read_bytes().splitlines()]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
    with httpx.Client(headers=headers, timeout=120) as client:
        for i in range(0, len(resources), 400):
            entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                       for r in resources[i:i + 400]]
            response = client.post(base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
            assert response.status_code == 200, response.text[:500]
    return [r["id"] for r in resources if r["resourceType"] == "Patient"]


@pytest.fixture(scope="module")
def smart_server(tmp_path_factory: pytest.TempPathFactory, population: Path) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("sekmet")
    key = ec.generate_private_key(ec.SECP384R1())
    pem = work / "client-key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "ES384"}
    auth = (f"{{types: [bearer, smart], tokens: [{TOKEN}], smart_clients: [{{client_id: {CLIENT}, "
            f"jwks: {json.dumps({'keys': [jwk]})}, scopes: 'system/*.read'}}]}}")
    with sekmet_server(work, auth=auth) as base:
        patients = _load(base, population)
        group = {"resourceType": "Group", "id": "lbp-cohort", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients]}
        response = httpx.put(f"{base}/Group/lbp-cohort", json=group,
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"})
        assert response.status_code in (200, 201), response.text[:300]
        yield base, pem


def test_a_group_export_with_smart_backend_services_gives_the_same_counts(
    smart_server: tuple[str, Path], from_directory: dict[str, Any], tmp_path: Path,
) -> None:
    base, pem = smart_server
    settings = _settings(audit_smart_client_id=CLIENT, audit_smart_key=pem, audit_smart_key_id="k1")
    report = _audit(tmp_path / "live", settings, fhir_server=base, export_level="group", group="lbp-cohort")
    assert report["source"]["fromServer"] is True
    assert counts(report) == counts(from_directory)


def test_without_credentials_the_server_refuses_and_the_audit_says_why(
    smart_server: tuple[str, Path], tmp_path: Path,
) -> None:
    base, _ = smart_server
    with pytest.raises(BulkError, match="HTTP 401"), BulkClient(base, _settings()) as client:
        client.export(ExportRequest("system"), tmp_path)


def test_a_server_off_the_allow_list_gets_no_request(tmp_path: Path) -> None:
    settings = _settings(fhir_allowlist=("https://ehr.example.org/fhir",))
    for server in ("https://ehr.example.org.evil.test/fhir", "http://ehr.example.org/fhir",
                   "https://ehr.example.org/fhir-admin"):
        with pytest.raises(BulkError, match="not on the allow-list"), BulkClient(server, settings) as client:
            client.export(ExportRequest("system"), tmp_path)
