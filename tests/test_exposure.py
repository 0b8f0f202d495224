"""The one URL-safety rule for everything the service fetches (JWK Sets, FHIR servers)."""

from __future__ import annotations

import pytest

from cds_hooks.netpolicy.urls import fetchable_url, http_url_parts


@pytest.mark.parametrize(
    ("url", "fetchable"),
    [
        ("https://ehr.example.org/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", True),
        ("http://[::1]/fhir", True),
        ("http://localhost/fhir", True),
        ("http://ehr.example.org/jwks.json", False),  # plain http off this machine
        ("https://user:secret@ehr.example.org/", False),  # credentials in the URL
        ("https://user@ehr.example.org/", False),
        ("ftp://ehr.example.org/jwks.json", False),
        ("file:///etc/passwd", False),
        ("https:///no-host", False),
        ("https://ehr.example.org:99999/", False),  # port out of range
        ("/relative/path.json", False),
    ],
)
def test_fetchable_url(url: str, fetchable: bool) -> None:
    assert fetchable_url(url) is fetchable


def test_http_url_parts_fills_the_default_port_and_normalises() -> None:
    assert http_url_parts("https://EHR.example.org/fhir/") == ("https", "ehr.example.org", 443, "/fhir")
    assert http_url_parts("http://127.0.0.1:8080/r4") == ("http", "127.0.0.1", 8080, "/r4")
    assert http_url_parts("https://u:p@ehr.example.org/") is None
