"""The one URL-safety rule for everything the service fetches (JWK Sets, FHIR servers, paging links, audit
downloads): normalisation first, then every check on the normal form."""

from __future__ import annotations

from typing import Any

import pytest

from cds_hooks.netpolicy.urls import (
    check_allowlist_entry,
    fetchable_url,
    http_url_parts,
    is_loopback_host,
    normalise_url,
    resolve_link,
    same_server,
    server_allowed,
)


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


@pytest.mark.parametrize(("url", "normal"), [
    ("HTTPS://EHR.Example.org:443/fhir/R4/", "https://ehr.example.org/fhir/R4"),  # case of the path is kept
    ("http://127.0.0.1:80", "http://127.0.0.1"),
    ("http://[0:0:0:0:0:0:0:1]:8080/fhir", "http://[::1]:8080/fhir"),
    ("https://ehr.example.org/fhir/a%3ab", "https://ehr.example.org/fhir/a%3Ab"),
    ("https://ehr.example.org/", "https://ehr.example.org"),
    # refused: what a server could read differently from us
    ("https://ehr.example.org/fhir/../admin", None),
    ("https://ehr.example.org/fhir/./r4", None),
    ("https://ehr.example.org/fhir//r4", None),
    ("https://ehr.example.org/fhir/%2e%2e/admin", None),
    ("https://ehr.example.org/fhir/%2E./admin", None),
    ("https://ehr.example.org/fhir/%41", None),  # an escaped unreserved character changes when normalised
    ("https://ehr.example.org/fhir/..;/admin", None),
    ("https://ehr.example.org/fhir;x=1", None),
    ("https://ehr.example.org/fhir/a%2fb", None),
    ("https://ehr.example.org/fhir/a%5cb", None),
    ("https://ehr.example.org/fhir/a%252e", None),
    ("https://ehr.example.org/fhir/a%00", None),
    ("https://ehr.example.org/fhir/%c3%a9", None),
    ("https://ehr.example.org/fhir/a%2", None),
    ("https://ehr.example.org/fhir\\..\\admin", None),
    ("https://ehr.example.org/fhir?x=1", None),  # a base URL has no query
    ("https://ehr.example.org/fhir#", None),
    ("https://ehr.example.org/fhir\u0001", None),
    ("https://ehr.example.org/fhir\u007f", None),
    ("https://ehr.example.org/fhir é", None),
    ("https://ehr.exämple.org/fhir", None),
    ("https://user@ehr.example.org/fhir", None),
    ("http://[::1]x:19999/", None),
    ("http://[fe80::1%25eth0]/fhir", None),
    ("http://127.1/fhir", None),
    ("http://2130706433/fhir", None),
    ("http://0x7f.0.0.1/fhir", None),
    ("http://0177.0.0.1/fhir", None),
    ("http://localhost./fhir", None),
    ("http://localhost:/fhir", None),
    ("http://localhost:0/fhir", None),
    ("http://localhost:65536/fhir", None),
    ("https://ehr.example.org:443:1/fhir", None),
])
def test_normalise_url(url: str, normal: str | None) -> None:
    assert normalise_url(url) == normal
    if normal is not None:
        assert normalise_url(normal) == normal  # the normal form is a fixed point


@pytest.mark.parametrize("junk", [5, 1.5, True, ["https://ehr.example.org/fhir"], {"url": "https://ehr.example.org"},
                                  b"https://ehr.example.org/fhir", "", None])
def test_what_is_not_a_url_string_is_refused_not_raised(junk: Any) -> None:
    # A fhirServer or paging link from messy JSON can be any JSON value: refused, never an exception.
    assert normalise_url(junk) is None and normalise_url(junk, query=True) is None


@pytest.mark.parametrize(("entry", "named"), [
    ("https://user@ehr.example.org/fhir", "credentials"), ("https://ehr.example.org/fhir?x=1", "query"),
    ("https://ehr.example.org/fhir#top", "fragment"), ("https://ehr.example.org/fhir/../admin", "dot"),
    ("https://ehr.example.org/fhir//r4", "empty"), ("https://ehr.example.org/fhir/%41", "escaped"),
])
def test_a_refused_allow_list_entry_is_named_with_what_an_entry_may_not_have(entry: str, named: str) -> None:
    # The operator reads this at start-up: it must name the entry and the kind of thing that made it wrong.
    problem = check_allowlist_entry(entry)
    assert problem is not None and repr(entry) in problem and named in problem
    assert check_allowlist_entry("http://ehr.example.org/fhir") is not None  # plain http off this machine
    assert check_allowlist_entry("https://ehr.example.org/fhir") is None


def test_a_query_only_where_the_caller_allows_one() -> None:
    assert normalise_url("http://127.0.0.1:9/fhir/Condition?patient=a|b&_count=2", query=True) == \
        "http://127.0.0.1:9/fhir/Condition?patient=a|b&_count=2"
    assert normalise_url("http://127.0.0.1:9/fhir/Condition?patient=a#x", query=True) is None
    assert normalise_url("http://127.0.0.1:9/fhir/Condition?patient=a b", query=True) is None


@pytest.mark.parametrize(("link", "resolved"), [
    ("https://ehr.example.org/fhir/Condition?page=2", "https://ehr.example.org/fhir/Condition?page=2"),
    ("/fhir/Condition?page=2", "https://ehr.example.org/fhir/Condition?page=2"),
    ("?page=2", "https://ehr.example.org/fhir?page=2"),
    ("Condition?page=2", "https://ehr.example.org/fhir/Condition?page=2"),
    ("../admin?page=2", None),  # never resolved away, unlike urljoin
    ("/fhir/x/../../admin", None),
    ("//evil.example/fhir", None),
    ("https://ehr.example.org/fhir/Condition?page=2#top", None),
])
def test_resolve_link(link: str, resolved: str | None) -> None:
    assert resolve_link(link, "https://ehr.example.org/fhir") == resolved


def test_a_link_with_its_scheme_in_capitals_is_absolute() -> None:
    # Schemes are case-insensitive (RFC 3986 3.1): not a relative path to append to the base.
    assert resolve_link("HTTPS://EHR.Example.org/fhir/Condition?_page=2", "https://ehr.example.org/fhir") == \
        "https://ehr.example.org/fhir/Condition?_page=2"


def test_same_server_is_scheme_host_port_and_path_prefix() -> None:
    base = "http://127.0.0.1:9/fhir"
    assert same_server("http://127.0.0.1:9/fhir/Condition?page=2", base)
    assert same_server("http://127.0.0.1:9/fhir?page=2", base)
    assert same_server("HTTP://LOCALHOST:9/fhir", "http://localhost:9/fhir")
    for other in ("http://127.0.0.2:9/fhir/x", "http://127.0.0.1:10/fhir/x", "https://127.0.0.1:9/fhir/x",
                  "http://127.0.0.1:9/fhir-admin/x", "http://127.0.0.1:9/admin", "http://127.0.0.1:9/fhir/../admin"):
        assert not same_server(other, base), other


def test_loopback_servers_are_allowed_only_as_configured() -> None:
    server, listed = "http://127.0.0.1:9/fhir", ("https://ehr.example.org/fhir",)
    assert server_allowed(server, ()) and not server_allowed(server, listed)  # the default
    assert server_allowed(server, listed, loopback=True)  # opted in alongside an allow-list
    assert not server_allowed(server, (), loopback=False)  # opted out: nothing at all is allowed
    assert server_allowed("https://ehr.example.org/fhir/r4", listed, loopback=False)


def test_a_download_url_with_a_query_is_judged_by_the_same_rule() -> None:
    """Audit downloads (Bulk Data files) come with queries; the allow-list and normal form still decide."""
    listed = ("https://ehr.example.org/fhir",)
    assert server_allowed("https://ehr.example.org/fhir/files/1.ndjson?sig=a%2Bb", listed, query=True)
    assert not server_allowed("https://ehr.example.org/fhir/files/1.ndjson?sig=x", listed)  # a base URL: no query
    for refused in ("https://ehr.example.org/fhir/../files/1.ndjson?sig=x", "https://elsewhere.example/f?x=1",
                    "https://ehr.example.org/fhir/f?x=1#", "https://ehr.example.org/fhir-files/f?x=1"):
        assert not server_allowed(refused, listed, query=True), refused


def test_a_host_name_may_have_253_characters_and_no_more() -> None:
    # RFC 1035: 253 characters in the text form, each label at most 63.
    longest = ".".join(("a" * 63, "b" * 63, "c" * 63, "d" * 61))
    assert len(longest) == 253 and normalise_url(f"https://{longest}/fhir") == f"https://{longest}/fhir"
    assert normalise_url(f"https://{longest}d/fhir") is None
    assert normalise_url(f"https://{'e' * 64}.example.org/fhir") is None


def test_a_segment_of_every_character_a_path_may_hold_is_kept() -> None:
    # RFC 3986 pchar less ';', with a valid escape: together, not just one at a time.
    segment = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@%20"
    assert normalise_url(f"https://ehr.example.org/fhir/{segment}") == f"https://ehr.example.org/fhir/{segment}"


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("[::1]", True), (" [::1] ", True), ("X127.0.0.1", False), ("localhostX", False), ("10.0.0.1", False),
    ("ehr.example.org", False),
])
def test_which_hosts_are_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_an_allow_list_entry_with_a_query_allows_nothing() -> None:
    # Refused at start-up too; here the rule itself: an entry is a base URL, never a query.
    listed = ("https://ehr.example.org/fhir?tenant=a",)
    assert not server_allowed("https://ehr.example.org/fhir", listed)
    assert not server_allowed("https://ehr.example.org/fhir?tenant=a", listed, query=True)


@pytest.mark.parametrize(("escape", "kept"), [("%1F", False), ("%20", True), ("%7D", True), ("%7F", False),
                                              ("%80", False)])
def test_an_escaped_byte_is_kept_only_between_space_and_tilde(escape: str, kept: bool) -> None:
    url = f"https://ehr.example.org/fhir/a{escape}b"
    assert (normalise_url(url) == url) is kept
