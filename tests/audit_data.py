"""Test data for the audit: fixtures turned into Bulk Data NDJSON, and a judge that records verdicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from cds_hooks.audit.adapter import LivePathway
from cds_hooks.audit.audit_rules import load_measures
from cds_hooks.audit.judge import AuditOptions, PatientJudge
from cds_hooks.audit.partition import ScanStats, route
from cds_hooks.audit.run import audit_service
from cds_hooks.audit.tally import Tally
from cds_hooks.fhir.bundles import bundle_resources, is_operation_outcome
from cds_hooks.pathway.rules import Rules
from cds_hooks.sandbox.fixtures import Fixture


def fixture_resources(fixture: Fixture, today: date) -> list[dict[str, Any]]:
    """What the EHR's server held for a fixture, as a Bulk export has it: the prefetch history, the
    Patient, and each draft order as placed today."""
    request = fixture.request
    patient_id = request["context"]["patientId"]
    out: list[dict[str, Any]] = []
    for value in (request.get("prefetch") or {}).values():
        if value is None or is_operation_outcome(value):
            continue
        out.extend(r for r in bundle_resources(value) if r.get("resourceType") != "OperationOutcome")
    if not any(r.get("resourceType") == "Patient" for r in out):
        out.append({"resourceType": "Patient", "id": patient_id})
    for draft in bundle_resources(request["context"]["draftOrders"]):
        placed = {**draft, "status": "active", "authoredOn": today.isoformat()}
        placed.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        out.append(placed)
    return out


def write_ndjson(resources: Iterable[dict[str, Any]], out: Path) -> None:
    """One file per resource type, as a Bulk export writes them."""
    out.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    for rtype, lines in by_type.items():
        with (out / f"{rtype}.ndjson").open("ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")


def tracing_judge(rules: Rules, today: date, samples: int = 0) -> PatientJudge:
    judge = PatientJudge(LivePathway(rules, audit_service(rules, None)), load_measures(rules),
                         AuditOptions(period=(today - timedelta(days=365), today), samples=samples))
    judge.trace = []
    return judge


def judge_lines(judge: PatientJudge, lines: list[bytes], tally: Tally | None = None) -> Tally:
    """Route lines to patients as the partitioner does (passing over what its sieve does), then judge each
    patient in this process."""
    tally = tally or Tally(sample_limit=judge.options.samples)
    patients: dict[str, list[bytes]] = {}
    catalogue: dict[str, dict[str, Any]] = {}
    scan = ScanStats()
    for line in lines:
        if (unasked := judge.sieve.passes_over(line)) is not None:
            scan.unasked[unasked] += 1
            continue
        pid, parsed = route(line, None)
        if pid is None:
            res = parsed or orjson.loads(line)
            catalogue[f"{res['resourceType']}/{res['id']}"] = res
        else:
            patients.setdefault(pid, []).append(line)
    for pid, own in patients.items():
        judge(pid, own, catalogue, tally)
    scan.count_into(tally)
    return tally


def as_if_read(counts: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """The counts had every line been read: what the sieve passed over counted as resources of its type
    (a population with no broken line among them)."""
    unasked = Counter({key: n for key, n in counts.items() if key[:2] == ("data", "unasked")})
    return counts - unasked + Counter({("data", "resources", key[2]): n for key, n in unasked.items()})
