"""The allow-list and template rules that guard every outbound FHIR query."""

from __future__ import annotations

import pytest

from cds_hooks.fhir.fetch import render_template, resource_type_of
from cds_hooks.netpolicy.urls import server_allowed
from cds_hooks.settings.config import Settings

ALLOW = ("https://ehr.example.org/fhir/r4", "https://other.example.net:8443/")


@pytest.mark.parametrize(("server", "allowlist", "allowed"), [
    ("http://127.0.0.1:8080/fhir", (), True),
    ("http://localhost/fhir", (), True),
    ("http://[::1]:9000/fhir", (), True),
    ("https://127.0.0.5/fhir", (), True),
    ("https://ehr.example.org/fhir/r4", (), False),  # nothing but loopback by default
    ("https://ehr.example.org/fhir/r4", ALLOW, True),
    ("https://ehr.example.org/fhir/r4/", ALLOW, True),
    ("https://EHR.example.org/fhir/r4/tenant-a", ALLOW, True),
    ("https://ehr.example.org/fhir/r4-admin", ALLOW, False),  # prefix must end on a segment
    ("https://ehr.example.org/fhir", ALLOW, False),
    ("https://ehr.example.org.evil.test/fhir/r4", ALLOW, False),
    ("https://ehr.example.org:444/fhir/r4", ALLOW, False),
    ("http://ehr.example.org/fhir/r4", ALLOW, False),  # https only off loopback
    ("https://evil.test@ehr.example.org/fhir/r4", ALLOW, False),  # credentials in the URL
    ("https://ehr.example.org@evil.test/fhir/r4", ALLOW, False),
    ("https://other.example.net:8443/anything", ALLOW, True),
    ("https://other.example.net/anything", ALLOW, False),
    ("http://127.0.0.1:8080/fhir", ALLOW, False),  # a configured list replaces the loopback default
    ("ftp://127.0.0.1/fhir", (), False),
    ("https://ehr.example.org:99999/fhir/r4", ALLOW, False),
])
def test_server_allowed(server: str, allowlist: tuple[str, ...], allowed: bool) -> None:
    assert server_allowed(server, allowlist) is allowed


def test_plain_http_allowlist_entries_are_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="must use https"):
        Settings(fhir_allowlist=("http://ehr.example.org/fhir",))
    with pytest.raises(ValueError, match="between 0 and 60"):
        Settings(fhir_timeout=0)
    assert Settings(fhir_allowlist=("http://127.0.0.1:8080/fhir",)).fhir_allowlist


@pytest.mark.parametrize(("template", "tokens", "expected"), [
    ("Condition?patient={{context.patientId}}", {"context.patientId": "p-1"}, "Condition?patient=p-1"),
    ("Patient/{{context.patientId}}", {"context.patientId": "p.1"}, "Patient/p.1"),
    ("Encounter/{{context.encounterId}}", {"context.encounterId": None}, None),  # no value: cannot fetch
    ("Patient/{{context.patientId}}", {"context.patientId": ".."}, None),  # would climb the path
    ("{{context.userId}}", {"context.userId": "Practitioner/.."}, None),  # so would its second part
    ("Patient/{{context.patientId}}", {"context.patientId": "X"}, "Patient/X"),  # one letter is an id
    ("Condition?patient={{context.patientId}}", {"context.patientId": "a&b=c"}, None),
    # A trailing newline would pass a `^...$` check ($ matches before it) and reach the URL raw.
    ("Condition?patient={{context.patientId}}", {"context.patientId": "p-1\n"}, None),
    ("Condition?patient={{context.patientId}}", {"context.patientId": "p 1"}, None),
    ("{{context.userId}}", {"context.userId": "Practitioner/dr-1"}, "Practitioner/dr-1"),
    ("Condition?patient={{ context.patientId }}&_count=2", {"context.patientId": "x"},
     "Condition?patient=x&_count=2"),
])
def test_render_template(template: str, tokens: dict[str, str | None], expected: str | None) -> None:
    assert render_template(template, tokens) == expected


def test_logs_name_the_query_type_not_the_url() -> None:
    assert resource_type_of("Condition?patient={{context.patientId}}") == "Condition search"
    assert resource_type_of("Patient/{{context.patientId}}") == "Patient read"
    # As rendered: a query holds a reference, so a '/' after the '?' does not make it a read.
    assert resource_type_of("Condition?subject=Patient/p-1") == "Condition search"
    assert resource_type_of("Patient") == "Patient search"
