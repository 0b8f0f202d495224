"""Benchmark: in-process service time vs the floor (orjson.loads of the same body).

Builds order-select requests whose prefetch holds N resources, mostly history
the pathway does not use (vitals, labs, immunisations, unrelated problems),
plus a low-back-pain episode, an NSAID and a few PT sessions. Prints medians
and ratios; nothing here asserts a time.

    python bench/bench_service.py [--sizes 100 1000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cds_hooks.app import create_app
from cds_hooks.fhir.resources import clear_validation_cache, load_models
from cds_hooks.pathway.record import READ_ELEMENTS
from cds_hooks.pathway.rules import load_rules
from cds_hooks.service.hook import evaluate_hook
from cds_hooks.settings.config import Settings

PATIENT = "bench-patient"
TODAY = date.today()


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _subject() -> dict[str, str]:
    return {"reference": f"Patient/{PATIENT}"}


def _realistic(resource: dict[str, Any], i: int) -> dict[str, Any]:
    """What US Core servers add to every resource: profile, narrative, identifier, encounter."""
    rtype = resource["resourceType"]
    resource["meta"] = {
        "versionId": "3", "lastUpdated": _day(i % 400) + "T12:00:00.000+00:00",
        "profile": [f"http://hl7.org/fhir/us/core/StructureDefinition/us-core-{rtype.lower()}"],
    }
    resource["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{rtype} {i} recorded at the clinic</div>',
    }
    resource["identifier"] = [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268", "value": f"{rtype}-{i:08d}"}]
    if rtype != "Encounter":
        resource["encounter"] = {"reference": f"Encounter/enc-{i // 5 * 5 + 4}"}
    return resource


def _noise(i: int) -> dict[str, Any]:
    """Unrelated history, shaped like real EHR output."""
    return _realistic(_noise_body(i), i)


def _noise_body(i: int) -> dict[str, Any]:
    kind = i % 5
    if kind == 0:
        return {
            "resourceType": "Observation", "id": f"obs-{i}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": _subject(), "effectiveDateTime": _day(i % 900) + "T09:30:00Z",
            "valueQuantity": {"value": 60 + i % 30, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"},
        }
    if kind == 1:
        return {
            "resourceType": "Condition", "id": f"cond-{i}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10",
                                 "display": "Essential (primary) hypertension"}]},
            "subject": _subject(), "onsetDateTime": _day(1000 + i),
        }
    if kind == 2:
        return {
            "resourceType": "Procedure", "id": f"proc-{i}", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "33879002",
                                 "display": "Administration of vaccine to produce active immunity"}]},
            "subject": _subject(), "performedDateTime": _day(i % 2000) + "T11:00:00Z",
        }
    if kind == 3:
        return {
            "resourceType": "MedicationRequest", "id": f"med-{i}", "status": "completed", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}]},
            "subject": _subject(), "authoredOn": _day(i % 1500),
        }
    return {
        "resourceType": "Encounter", "id": f"enc-{i}", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003",
                              "display": "Encounter for check up"}]}],
        "subject": _subject(), "period": {"start": _day(i % 1800) + "T08:00:00Z"},
    }


def _relevant() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Condition", "id": "lbp",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50",
                                 "display": "Low back pain, unspecified"}]},
            "subject": _subject(), "onsetDateTime": _day(30),
        },
        {
            "resourceType": "MedicationRequest", "id": "nsaid", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "197806", "display": "Ibuprofen 600 MG Oral Tablet"}]},
            "subject": _subject(), "authoredOn": _day(28),
        },
        *[
            {
                "resourceType": "Procedure", "id": f"pt-{d}", "status": "completed",
                "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110",
                                     "display": "Therapeutic exercise"}]},
                "subject": _subject(), "performedDateTime": _day(d),
            }
            for d in (20, 13, 6)
        ],
    ]


def build_request(n: int) -> bytes:
    relevant = _relevant()
    history = relevant + [_noise(i) for i in range(n - len(relevant) - 1)]
    keys = {
        "Condition": "conditions", "Procedure": "procedures", "Encounter": "encounters",
        "MedicationRequest": "medicationRequests", "Observation": "observations",
    }
    bundles: dict[str, Any] = {}
    for res in history:
        key = keys[res["resourceType"]]
        bundles.setdefault(key, {"resourceType": "Bundle", "type": "searchset", "entry": []})
        bundles[key]["entry"].append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})
    prefetch: dict[str, Any] = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"},
        **{k: v for k, v in bundles.items() if k != "observations"},
        "medicationStatements": None, "serviceRequests": None,
        "imagingStudies": None, "diagnosticReports": None,
    }
    # Observations are not prefetched by this service; fold them into procedures'
    # bundle so the body really carries N resources the reader must skip.
    prefetch["procedures"]["entry"].extend(bundles.get("observations", {}).get("entry", []))
    request = {
        "hook": "order-select", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/bench", "patientId": PATIENT, "encounterId": "enc-now",
            "selections": ["ServiceRequest/mri"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {
                "resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "order",
                "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148",
                                     "display": "MRI lumbar spine without contrast"}]},
                "subject": _subject(),
            }}]},
        },
        "prefetch": prefetch,
    }
    return orjson.dumps(request)


def median_us(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(min(20, repeat)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    loads = []
    for _ in range(5):  # rules load: every worker does it at start-up and on reload
        started = time.perf_counter()
        rules = load_rules()
        loads.append(time.perf_counter() - started)
    codes = sum(len(v.codes) for v in rules.valuesets.values())
    load_s = statistics.median(loads)
    print(f"rules load: {load_s * 1000:.0f} ms median of 5 ({len(rules.valuesets)} value sets, {codes} codes); "
          f"{load_s:.2f}x the 1 s budget")
    service = rules.services["lumbar-pathway-order-select"]
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), log_level="WARNING", auto_migrate=True))
        # As each gunicorn worker does after start-up (gunicorn_conf.post_worker_init): load the FHIR
        # models and freeze the long-lived heap, so collections do not rescan it on every call.
        load_models(READ_ELEMENTS)
        gc.collect()
        gc.freeze()
        client = app.test_client()
        print(f"{'resources':>9} {'body kB':>8} {'floor µs':>9} {'cold µs':>8} {'cold×':>6} {'warm µs':>8}"
              f" {'warm×':>6} {'HTTP µs':>8} {'HTTP×':>6}")
        for n in args.sizes:
            body = build_request(n)
            check = client.post("/cds-services/lumbar-pathway-order-select", data=body,
                                content_type="application/json")
            assert check.status_code == 200 and len(check.get_json()["cards"]) == 1, check.get_data()[:300]

            def core(body: bytes = body) -> object:
                outcome = evaluate_hook(rules, service, orjson.loads(body), TODAY)
                return orjson.dumps(outcome.response())

            def cold(body: bytes = body) -> object:
                clear_validation_cache()  # as on the first hook call for a patient
                return core(body)

            def http(body: bytes = body) -> object:
                return client.post("/cds-services/lumbar-pathway-order-select", data=body,
                                   content_type="application/json").status_code

            floor = median_us(lambda body=body: orjson.loads(body), args.repeat)
            cold_us = median_us(cold, args.repeat)
            core_us = median_us(core, args.repeat)
            http_us = median_us(http, args.repeat)
            print(f"{n:>9} {len(body) / 1024:>8.0f} {floor:>9.0f} {cold_us:>8.0f} {cold_us / floor:>6.2f}"
                  f" {core_us:>8.0f} {core_us / floor:>6.2f} {http_us:>8.0f} {http_us / floor:>6.2f}")
    print("floor = orjson.loads of the request body")
    print("cold  = parse + read record + validate used resources + pathway + cards + orjson.dumps,")
    print("        first call for this history (validation verdict cache cleared)")
    print("warm  = the same on a repeat call with the same history (order-select re-fires on every edit)")
    print("HTTP  = warm, through the Flask app in-process, including the SQLite issued-card write")


if __name__ == "__main__":
    main()
