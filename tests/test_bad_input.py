"""Hostile and malformed requests through the real HTTP app: the bad-input matrix.

Each case starts from a real fixture (fixtures/premature-mri-3-weeks.json: one
`imaging-premature` warning; fixtures/red-flag-cauda-equina-mri.json: no card),
breaks one thing, and states the status CDS Hooks calls for:

- 400: the body cannot be parsed as JSON (truncated, not UTF-8, raw control characters, too deep for the parser);
- 404 / 405 / 413 / 415: unknown service, wrong method, body over the limit, not JSON;
- 422: parsable, but not a conformant CDS Hooks request or FHIR data the service must use;
- 412: conformant, but required prefetch data is missing or reported unobtainable;
- 200: messy but usable, with the verdict (the rule ids of the cards) the clean data would get.

None may give a 5xx. Every non-200 body is an OperationOutcome.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.app import create_app
from cds_hooks.fhir.limits import MAX_DEPTH, deeper_than
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from tests.conformance import assert_conformant
from tests.conftest import REPO

SELECT = "/cds-services/lumbar-pathway-order-select"
SIGN = "/cds-services/lumbar-pathway-order-sign"
PREMATURE = ("imaging-premature",)
SILENT = ()
MAX_BODY = 5 * 1024 * 1024  # the default limit

TODAY = today_utc()
BASE = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", TODAY).request
CAUDA = load_fixture(fixtures_dir() / "red-flag-cauda-equina-mri.json", TODAY).request
CES = next(e["resource"] for e in CAUDA["prefetch"]["conditions"]["entry"] if e["resource"]["id"] == "cond-ces")
LBP = BASE["prefetch"]["conditions"]["entry"][0]["resource"]
MARK = "@@replace-me@@"

Body = dict[str, Any]
Mutation = Callable[[Body], Any]


def _walk(body: Body, path: str) -> tuple[Any, str | int]:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = body
    for part in parents:
        node = node[part]
    return node, last


def put(path: str, value: Any) -> Mutation:
    def mutate(body: Body) -> Body:
        node, key = _walk(body, path)
        node[key] = copy.deepcopy(value)
        return body
    return mutate


def drop(path: str) -> Mutation:
    def mutate(body: Body) -> Body:
        node, key = _walk(body, path)
        del node[key]
        return body
    return mutate


def append(path: str, *items: Any) -> Mutation:
    def mutate(body: Body) -> Body:
        node, key = _walk(body, path)
        node[key].extend(copy.deepcopy(items))
        return body
    return mutate


def raw(path: str, replacement: bytes) -> Mutation:
    """Serialise with a marker at `path`, then splice bytes JSON cannot otherwise carry."""
    def mutate(body: Body) -> bytes:
        put(path, MARK)(body)
        return orjson.dumps(body).replace(orjson.dumps(MARK), replacement)
    return mutate


def chain(*mutations: Mutation) -> Mutation:
    def mutate(body: Body) -> Any:
        for mutation in mutations:
            body = mutation(body)
        return body
    return mutate


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_extensions(levels: int) -> list[Body]:
    """Valid FHIR: extensions within extensions, two JSON levels each."""
    value: list[Body] = [{"url": "http://example.org/leaf", "valueString": "x"}]
    for _ in range(levels - 1):
        value = [{"url": "http://example.org/nest", "extension": value}]
    return value


def entry(resource: Body) -> Body:
    return {"resource": resource}


def history(resource_type: str, **fields: Any) -> Body:
    return {"resourceType": resource_type, "id": "h-1", "subject": {"reference": "Patient/pat-lbp-3w"}, **fields}


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    send: Mutation | bytes | None = None  # None: the base request unchanged
    cards: tuple[str, ...] | None = None  # for 200: the rule ids expected
    why: str = ""
    url: str = SELECT
    method: str = "POST"
    content_type: str | None = "application/json"
    base: Body | None = None  # default BASE
    words: tuple[str, ...] = ()  # in the OperationOutcome diagnostics


CASES = [
    # ---- transport: method, route, media type, size ----------------------------------------
    Case("unknown-service", 404, url="/cds-services/no-such-service", words=("no-such-service",),
         why="CDS Hooks services are addressed by id; an id discovery does not list is not found"),
    Case("get-on-post-route", 405, method="GET", why="service calls are POST only"),
    Case("put-on-discovery", 405, method="PUT", url="/cds-services", why="discovery is GET only"),
    Case("delete-feedback", 405, method="DELETE", url=SELECT + "/feedback", why="feedback is POST only"),
    Case("text-plain", 415, content_type="text/plain", words=("application/json",),
         why="CDS Hooks bodies are application/json"),
    Case("form-urlencoded", 415, content_type="application/x-www-form-urlencoded",
         why="a form post is not a CDS Hooks request"),
    Case("fhir-json-media-type", 200, cards=PREMATURE, content_type="application/fhir+json",
         why="application/fhir+json is JSON too"),
    Case("json-with-charset", 200, cards=PREMATURE, content_type="application/json; charset=utf-8",
         why="a charset parameter does not change the media type"),
    Case("no-content-type", 415, content_type=None, words=("without a Content-Type",),
         why="no media type at all: refused, so a cross-site form or a bare POST is never read as a request"),
    Case("body-over-limit", 413, put("prefetch.junk", "x" * (MAX_BODY + 1)), words=(str(MAX_BODY),),
         why="bodies over LUMBAR_CDS_MAX_BODY_BYTES are refused before they are read"),
    # ---- not JSON: 400 ----------------------------------------------------------------------
    Case("empty-body", 400, b"", why="an empty body is not a JSON document"),
    Case("whitespace-body", 400, b"  \n ", why="nor is whitespace"),
    Case("truncated-json", 400, lambda b: orjson.dumps(b)[:-40], words=("not valid JSON",),
         why="cut off mid-document"),
    Case("single-quoted-json", 400, b"{'hook': 'order-select'}", why="not JSON syntax"),
    Case("nan-literal", 400, b'{"hook": NaN}', why="NaN is not JSON"),
    Case("number-overflow", 400, raw("context.extension", b"1e999"), why="infinity is not a JSON number"),
    Case("not-utf8", 400, raw("prefetch.conditions.entry.0.resource.code.text", b'"Low back pain \xff"'),
         why="JSON text must be UTF-8 (RFC 8259); no guessing at a legacy encoding"),
    Case("lone-surrogate", 400, raw("hookInstance", b'"\\ud800"'), why="an escaped lone surrogate is not text"),
    Case("raw-nul-byte", 400, raw("prefetch.conditions.entry.0.resource.code.text", b'"pain\x00"'),
         why="control characters must be escaped inside JSON strings"),
    Case("utf8-bom", 400, lambda b: b"\xef\xbb\xbf" + orjson.dumps(b), why="RFC 8259: no byte order mark"),
    Case("nesting-beyond-parser", 400, raw("context.extension", nested(1100)),
         why="orjson refuses nesting over 1024 levels"),
    # ---- JSON, but not a CDS Hooks request: 422 ---------------------------------------------
    Case("json-array", 422, b"[1, 2]", why="a request is a JSON object"),
    Case("json-string", 422, b'"order-select"', why="a request is a JSON object"),
    Case("json-number", 422, b"42", why="a request is a JSON object"),
    Case("json-null", 422, b"null", why="a request is a JSON object"),
    Case("hook-number", 422, put("hook", 7), words=("hook",), why="hook is a string"),
    Case("hook-unknown", 422, put("hook", "patient-view"), words=("order-select",),
         why="this service id answers order-select only"),
    Case("hook-of-other-service", 422, put("hook", "order-sign"), words=("order-sign",),
         why="order-sign has its own service id"),
    Case("hook-instance-number", 422, put("hookInstance", 42), words=("hookInstance",),
         why="hookInstance is a string (a UUID)"),
    Case("hook-instance-huge", 422, put("hookInstance", "a" * 100_000), words=("hookInstance",),
         why="a hookInstance is a UUID, not 100 kB"),
    Case("context-list", 422, put("context", [BASE["context"]]), words=("context",), why="context is an object"),
    Case("context-null", 422, put("context", None), words=("context",), why="context is required"),
    Case("prefetch-list", 422, put("prefetch", [BASE["prefetch"]]), words=("prefetch",),
         why="prefetch is an object of key to resource"),
    Case("prefetch-string", 422, put("prefetch", "patient"), words=("prefetch",), why="idem"),
    Case("draft-orders-string", 422, put("context.draftOrders", "ServiceRequest/mri-1"),
         words=("draftOrders",), why="draftOrders is a FHIR Bundle"),
    Case("draft-orders-entry-object", 422, put("context.draftOrders.entry", {"resource": LBP}),
         words=("entry",), why="Bundle.entry is an array"),
    Case("draft-orders-entries-not-objects", 422, append("context.draftOrders.entry", 1, "x", None),
         words=("entry[1]",), why="every draft order entry must carry a resource"),
    Case("draft-order-without-resource-type", 422, drop("context.draftOrders.entry.0.resource.resourceType"),
         words=("resourceType",), why="a resource without resourceType cannot be judged"),
    Case("draft-orders-duplicate-id", 422,
         append("context.draftOrders.entry", BASE["context"]["draftOrders"]["entry"][0]),
         words=("two entries",), why="suggestions delete a draft by id, so ids must be unambiguous"),
    Case("draft-order-invalid-r4", 422, put("context.draftOrders.entry.0.resource.status", 7),
         words=("not a valid FHIR R4",), why="a card must not act on a draft order that is not valid R4"),
    Case("selections-object", 422, put("context.selections", {"0": "ServiceRequest/mri-1"}),
         words=("selections",), why="selections is an array of references"),
    Case("selections-empty", 422, put("context.selections", []), words=("selections",),
         why="order-select names at least one selected order"),
    Case("selections-not-in-draft-orders", 422, put("context.selections", ["ServiceRequest/other"]),
         words=("not an entry",), why="a selection must be one of the draft orders"),
    Case("patient-id-object", 422, put("context.patientId", {"id": "pat-lbp-3w"}), words=("patientId",),
         why="patientId is a FHIR id string"),
    Case("patient-id-with-nul", 422, put("context.patientId", "pat\u0000lbp"), words=("patientId",),
         why="a FHIR id has no control characters"),
    Case("user-id-not-a-reference", 422, put("context.userId", "dr-lee"), words=("userId",),
         why="userId is Practitioner/... or PractitionerRole/..."),
    Case("fhir-authorization-string", 422, put("fhirAuthorization", "Bearer x"),
         words=("fhirAuthorization",), why="fhirAuthorization is an object"),
    Case("fhir-authorization-token-number", 422,
         lambda b: {**b, "fhirServer": "https://ehr.example/fhir", "fhirAuthorization": {"access_token": 5}},
         words=("access_token",), why="access_token is a string"),
    Case("fhir-authorization-without-server", 422, put("fhirAuthorization", {"access_token": "t"}),
         words=("fhirServer",), why="CDS Hooks: fhirAuthorization requires fhirServer"),
    Case("fhir-server-not-http", 422, put("fhirServer", "ftp://ehr.example"), words=("fhirServer",),
         why="fhirServer is an http(s) base URL"),
    Case("context-nested-too-deep", 422, raw("context.extension", nested(MAX_DEPTH + 5)),
         words=(str(MAX_DEPTH),), why="the service's own nesting limit on everything it reads"),
    Case("prefetch-value-number", 422, put("prefetch.procedures", 42), words=("prefetch.procedures",),
         why="a prefetch value is a FHIR resource or null; 42 is neither, and is not 'no data'"),
    Case("prefetch-value-list", 422, put("prefetch.procedures", []), words=("prefetch.procedures",),
         why="idem: a bare array is not a Bundle"),
    Case("prefetch-value-without-resource-type", 422, put("prefetch.conditions", {"entry": []}),
         words=("resourceType",), why="idem"),
    Case("prefetch-bundle-entry-object", 422,
         put("prefetch.conditions.entry", {"resource": LBP}), words=("entry",), why="Bundle.entry is an array"),
    Case("prefetch-bundle-entry-number", 422, put("prefetch.procedures.entry", 5),
         words=("prefetch.procedures",), why="Bundle.entry is an array (was a 500: iterating a number)"),
    Case("deep-reason-code", 422, raw("context.draftOrders.entry.0.resource.reasonCode.0.extension",
                                      json.dumps(nested_extensions(130)).encode()),
         words=(str(MAX_DEPTH),), why="was a 500: the reason is copied into the suggested PT referral, "
                                      "and a card cannot be serialised past 255 levels"),
    Case("prefetch-patient-other-id", 422, put("prefetch.patient.id", "someone-else"),
         words=("different patient",), why="history of another patient must not be judged"),
    # ---- conformant, required data missing: 412 ---------------------------------------------
    Case("required-prefetch-missing", 412, drop("prefetch.conditions"), words=("conditions",),
         why="without conditions the population and red flags cannot be judged"),
    Case("required-prefetch-outcome", 412,
         put("prefetch.patient", {"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                                "code": "timeout"}]}),
         words=("patient",), why="the EHR says it could not get the patient"),
    *(Case(f"fhirserver-{name}", 412, chain(drop("prefetch.conditions"), put("fhirServer", server)),
           words=("not a plain http(s) base URL",),
           why=f"a fhirServer with {name.replace('-', ' ')} is refused before any connection, never a 500")
      for name, server in (("dot-segments", "http://127.0.0.1:9/fhir/../admin"),
                           ("control-character", "http://127.0.0.1:9/fhir\u0001"),
                           ("query-and-fragment", "http://127.0.0.1:9/admin/secret?x=1#"),
                           ("broken-ipv6-host", "http://[::1]x:19999/"))),
    # ---- messy but usable: 200 with the verdict the clean data gets -------------------------
    Case("base-request", 200, cards=PREMATURE, why="the fixture itself"),
    Case("red-flag-base-request", 200, cards=SILENT, base=CAUDA, why="the red-flag fixture itself"),
    Case("unasked-prefetch-keys", 200, cards=PREMATURE,
         send=lambda b: {**b, "prefetch": {**b["prefetch"], "labs": [1, "x"], "vitals": {"no": "type"},
                                           "extra": None}},
         why="keys the service never asked for are ignored, whatever they hold"),
    Case("bundle-entries-not-objects", 200, cards=PREMATURE,
         send=append("prefetch.conditions.entry", 1, "x", None, [], {}, {"resource": "Condition"},
                     {"resource": {"id": "no-type"}}),
         why="junk entries in a history Bundle are skipped; the rest is read"),
    Case("red-flag-among-junk-entries", 200, cards=SILENT, base=CAUDA,
         send=append("prefetch.conditions.entry", 1, None, {"resource": {"id": "no-type"}}),
         why="junk does not hide the red flag"),
    Case("history-without-resource-type", 200, cards=PREMATURE,
         send=put("prefetch.procedures", {"resourceType": "Bundle", "entry": [entry({"id": "p1"})]}),
         why="a resource without resourceType is not used"),
    Case("same-resource-twice", 200, cards=PREMATURE,
         send=append("prefetch.conditions.entry", entry(LBP)),
         why="one resource returned by two searches is counted once"),
    Case("two-resources-one-id-red-flag-second", 200, cards=SILENT,
         send=append("prefetch.conditions.entry",
                     entry({**CES, "id": "cond-lbp", "subject": {"reference": "Patient/pat-lbp-3w"}})),
         why="an EHR reusing an id for a different resource must not hide the red flag"),
    Case("onset-2026-13-45", 200, cards=PREMATURE,
         send=put("prefetch.conditions.entry.0.resource.onsetDateTime", "2026-13-45"),
         why="the Condition is skipped (invalid date) and counted; the order's reasonCode still places "
             "the patient in the pathway"),
    Case("birth-date-2026-02-30", 200, cards=PREMATURE, send=put("prefetch.patient.birthDate", "2026-02-30"),
         why="the birth date is not needed for this verdict"),
    Case("authored-on-garbage", 200, cards=PREMATURE,
         send=put("prefetch.medicationRequests.entry.0.resource.authoredOn", "yesterday"),
         why="an unreadable NSAID is skipped; without PT the MRI is still premature"),
    # FHIR years run to 9999: date arithmetic on them once overflowed into a 500.
    Case("nsaid-supply-past-the-calendar", 200, cards=PREMATURE,
         send=put("prefetch.medicationRequests.entry.0.resource.dispenseRequest",
                  {"expectedSupplyDuration": {"value": 1e12, "code": "a"}}),
         why="a supply that ends after 9999-12-31 ends on that day; the NSAID counts, PT is still missing"),
    Case("nsaid-bounds-end-9999-12-31", 200, cards=PREMATURE,
         send=put("prefetch.medicationRequests.entry.0.resource.dosageInstruction",
                  [{"timing": {"repeat": {"boundsPeriod": {"end": "9999-12-31"}}}}]),
         why="a course stated to end on the calendar's last day is read as running to it"),
    Case("onset-age-past-the-calendar", 200, cards=SILENT,
         send=chain(put("prefetch.patient.birthDate", "9999-01-01"),
                    drop("prefetch.conditions.entry.0.resource.onsetDateTime"),
                    put("prefetch.conditions.entry.0.resource.onsetAge", {"value": 40, "code": "a"})),
         why="an onset age that lands after 9999 gives no onset; born in 9999, the patient is outside the "
             "pathway's adult age band, so no card"),
    Case("escaped-nul-in-display", 200, cards=PREMATURE,
         send=put("prefetch.conditions.entry.0.resource.code.coding.0.display", "Low back\u0000pain"),
         why="NUL is a legal JSON string character; the code decides"),
    Case("escaped-nul-in-hook-instance", 200, cards=PREMATURE, send=put("hookInstance", "abc\u0000def"),
         why="hookInstance is opaque; it is stored, and logged only if it is a plain token"),
    Case("huge-narrative-in-unread-history", 200, cards=PREMATURE,
         send=append("prefetch.procedures.entry",
                     entry(history("Procedure", status="completed", text={"div": "x" * (4 * 1024 * 1024)}))),
         why="4 MiB under the limit is accepted; the narrative is never read"),
    Case("huge-display-in-read-condition", 200, cards=PREMATURE,
         send=put("prefetch.conditions.entry.0.resource.code.text", "pain " * 200_000),
         why="a 1 MB label is still a label"),
    Case("deep-unread-history", 200, cards=PREMATURE,
         send=chain(append("prefetch.procedures.entry", entry(history("Observation"))),
                   raw("prefetch.procedures.entry.0.resource.extension", nested(1000))),
         why="nesting the rules never read is never walked (orjson still caps it at 1024)"),
    Case("deep-read-condition", 200, cards=PREMATURE,
         send=put("prefetch.conditions.entry.0.resource.code.extension", nested_extensions(MAX_DEPTH // 2)),
         why="a read Condition nested past the limit is skipped like any unreadable resource"),
    Case("deep-draft-order", 422,
         send=put("context.draftOrders.entry.0.resource.code.extension", nested_extensions(MAX_DEPTH // 2)),
         words=(str(MAX_DEPTH),), why="the draft orders are read, so the limit applies"),
    Case("coding-not-an-array", 200, cards=PREMATURE,
         send=put("prefetch.conditions.entry.0.resource.code.coding", 5),
         why="was a 500; a coding that is not an array matches nothing, the reasonCode still counts"),
    Case("contained-not-an-array", 200, cards=PREMATURE,
         send=chain(drop("prefetch.medicationRequests.entry.0.resource.medicationCodeableConcept"),
                    put("prefetch.medicationRequests.entry.0.resource.medicationReference", {"reference": "#m"}),
                    put("prefetch.medicationRequests.entry.0.resource.contained", 5)),
         why="was a 500; the NSAID cannot be resolved, and without PT the MRI is premature anyway"),
    Case("code-as-string", 200, cards=PREMATURE, send=put("prefetch.conditions.entry.0.resource.code", "M54.50"),
         why="a code that is not a CodeableConcept matches nothing; the reasonCode still counts"),
    Case("coding-as-object", 200, cards=SILENT, base=CAUDA,
         send=put("prefetch.conditions.entry.0.resource.code.coding", {"code": "M54.50"}),
         why="junk coding is ignored; the red flag still silences"),
    Case("naive-datetime-and-vendor-element", 200, cards=SILENT, base=CAUDA,
         send=lambda b: put("prefetch.conditions.entry.1.resource", {
             **b["prefetch"]["conditions"]["entry"][1]["resource"],
             "onsetDateTime": f"{TODAY.isoformat()}T08:00:00", "_vendorFlag": {"x": 1}})(b),
         why="liberal input: a timezone-less datetime and a vendor element keep the red flag readable"),
    Case("valid-fhir-authorization", 200, cards=PREMATURE,
         send=lambda b: {**b, "fhirServer": "https://ehr.example/fhir",
                         "fhirAuthorization": {"access_token": "t0k", "token_type": "Bearer", "expires_in": 300,
                                               "scope": "patient/*.read", "subject": "cds"}},
         why="a conformant fhirAuthorization changes nothing while prefetch is complete"),
    Case("unhashable-codings-in-draft-order", 422,
         send=append("context.draftOrders.entry.0.resource.code.coding",
                     {"system": ["x"], "code": ["72148"]}, {"system": "x", "code": {"a": 1}}),
         words=("not a valid FHIR R4 ServiceRequest", "code.coding.1.code"),
         why="the draft order is validated: a code that is not a string is named, never a 500"),
    Case("selections-on-order-sign", 200, cards=PREMATURE, url=SIGN,
         send=lambda b: {**b, "hook": "order-sign"},
         why="order-sign ignores a selections member it does not define"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    app: Flask = create_app(Settings(data_dir=tmp_path_factory.mktemp("bad-input"), rules_dir=REPO / "rules",
                                      auto_migrate=True))
    with app.test_client() as c:
        yield c


def test_the_matrix_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.why for c in CASES)
    assert all((c.status == 200) == (c.cards is not None) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(client: FlaskClient, case: Case) -> None:
    request = copy.deepcopy(case.base or BASE)
    sent = case.send if isinstance(case.send, bytes) else (case.send or (lambda b: b))(request)
    data = sent if isinstance(sent, bytes) else orjson.dumps(sent)
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    response = client.open(case.url, method=case.method, data=data, headers=headers)

    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    body = orjson.loads(response.get_data())
    if case.status != 200:
        assert body["resourceType"] == "OperationOutcome"
        diagnostics = body["issue"][0]["diagnostics"]
        for word in case.words:
            assert word in diagnostics, diagnostics
        return
    assert_conformant(body, orjson.loads(data))
    assert sorted(c["source"]["topic"]["code"] for c in body["cards"]) == sorted(case.cards or ())


def test_depth_limit_is_exact() -> None:
    def lists(depth: int) -> Any:
        value: Any = []
        for _ in range(depth - 1):
            value = [value]
        return value

    assert not deeper_than(lists(MAX_DEPTH))
    assert deeper_than(lists(MAX_DEPTH + 1))
    assert not deeper_than({"a": [{"b": "x" * 10}], "c": 1}, 3)
    assert deeper_than({"a": [{"b": {}}]}, 3)
    assert not deeper_than("scalar", 0)


# A coding's system or code, or a status, as a list or an object is not hashable: every reader that probes a set
# with it must treat it as matching nothing (it was a 500 for an Observation's code). One resource of each kind
# read from the prefetch, with junk in every coded field and in its status, must leave the verdict unchanged.
_JUNK_CODINGS = [{"system": ["http://loinc.org"], "code": ["8310-5"]}, {"system": {"a": 1}, "code": {"b": 2}},
                 {"system": "http://loinc.org", "code": ["8310-5"]}, {"system": ["http://snomed.info/sct"],
                                                                      "code": "122496007"}]
_JUNK_CONCEPT = {"coding": _JUNK_CODINGS}
_KINDS = {"conditions": "Condition", "procedures": "Procedure", "encounters": "Encounter",
          "medicationRequests": "MedicationRequest", "medicationStatements": "MedicationStatement",
          "serviceRequests": "ServiceRequest", "imagingStudies": "ImagingStudy",
          "diagnosticReports": "DiagnosticReport", "vitalSigns": "Observation"}


def test_every_prefetch_key_is_read_by_the_request() -> None:
    assert set(BASE["prefetch"]) - {"patient"} == set(_KINDS)


@pytest.mark.parametrize("status", [["final"], {"code": "completed"}, "completed"])
@pytest.mark.parametrize("key", sorted(_KINDS))
def test_unhashable_codes_and_statuses_match_nothing(client: FlaskClient, key: str, status: Any) -> None:
    junk = history(_KINDS[key], status=status, code=_JUNK_CONCEPT, category=[_JUNK_CONCEPT],
                   bodySite=[_JUNK_CONCEPT], reasonCode=[_JUNK_CONCEPT], medicationCodeableConcept=_JUNK_CONCEPT,
                   type=[_JUNK_CONCEPT], performerType=_JUNK_CONCEPT, modality=_JUNK_CODINGS,
                   clinicalStatus=_JUNK_CONCEPT, verificationStatus=_JUNK_CONCEPT,
                   valueQuantity={"value": 39.0, "unit": ["Cel"], "code": {"x": 1}},
                   effectiveDateTime=TODAY.isoformat(), authoredOn=TODAY.isoformat())
    request = copy.deepcopy(BASE)
    bundle = request["prefetch"][key] or {"resourceType": "Bundle", "type": "searchset"}
    bundle.setdefault("entry", []).append(entry(junk))
    request["prefetch"][key] = bundle
    response = client.post(SELECT, data=orjson.dumps(request), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    body = orjson.loads(response.get_data())
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == list(PREMATURE)
