"""The audit's own logic at its boundaries: the record as of a day, which orders are audited, routing
lines to patients, small-cell suppression and the measure windows."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds_hooks.audit import asof, engine_local, suppress
from cds_hooks.audit.adapter import LivePathway
from cds_hooks.audit.audit_rules import load_measures
from cds_hooks.audit.judge import _dimensions
from cds_hooks.audit.measure import evaluate_measure
from cds_hooks.audit.ndjson import InputFile, chunks, line_blocks, type_from_name
from cds_hooks.audit.orders import AuditedOrder, find_orders
from cds_hooks.audit.partition import PartitionFiles, route
from cds_hooks.audit.run import audit_service
from cds_hooks.audit.sieve import Sieve
from cds_hooks.pathway.rules import Rules
from tests.audit_data import judge_lines, tracing_judge

DAY = date(2025, 6, 15)


def _code(rules: Rules, kind: str, **where: Any) -> dict[str, Any]:
    vs = next(v for v in rules.valuesets.values() if v.kind == kind
              and all(getattr(v, k) == val for k, val in where.items()))
    c = next(c for c in vs.codes if c.verified)
    return {"coding": [{"system": c.system, "code": c.code, "display": c.display}]}


def test_a_resource_counts_from_the_day_it_was_recorded() -> None:
    cond = {"resourceType": "Condition", "onsetDateTime": "2025-05-01", "recordedDate": DAY.isoformat()}
    assert asof.as_of(cond, DAY) is cond
    assert asof.as_of(cond, DAY - timedelta(days=1)) is None  # onset earlier, but not yet recorded
    assert asof.as_of({"resourceType": "Condition", "onsetDateTime": "2025-06-16"}, DAY) is None
    assert asof.as_of({"resourceType": "Condition"}, DAY) is not None  # undated: kept


def test_what_changed_later_is_wound_back() -> None:
    cond = {"resourceType": "Condition", "onsetDateTime": "2025-01-01", "abatementDateTime": "2025-06-16",
            "clinicalStatus": {"coding": [{"code": "resolved"}]}}
    then = asof.as_of(cond, DAY)
    assert then is not None and then["clinicalStatus"]["coding"][0]["code"] == "active"
    assert "abatementDateTime" not in then and cond["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert asof.as_of({**cond, "abatementDateTime": DAY.isoformat()}, DAY)["clinicalStatus"]["coding"][0][
        "code"] == "resolved"
    course = {"resourceType": "Procedure", "status": "completed",
              "performedPeriod": {"start": "2025-05-01", "end": "2025-07-01"}}
    clipped = asof.as_of(course, DAY)
    assert clipped is not None and clipped["performedPeriod"]["end"] == DAY.isoformat()
    assert clipped["status"] == "in-progress"


def test_orders_their_results_and_studies_without_an_order(rules: Rules) -> None:
    pathway = LivePathway(rules, audit_service(rules, None))
    mri = _code(rules, "lumbar-imaging", modality="MRI", contrast=False)
    sr = {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order", "code": mri,
          "authoredOn": "2025-03-01"}
    draft = {**sr, "id": "o2", "status": "draft"}
    chest = {**sr, "id": "o3", "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5"}]}}
    study = {"resourceType": "ImagingStudy", "id": "s1", "status": "available", "procedureCode": [mri]}
    result = {**study, "started": "2025-03-31"}  # 30 days after the order: its result
    orphan = {**study, "id": "s2", "started": "2025-04-01"}  # 31 days after: audited in its own right
    # Its result by reference, months later: a versioned reference names the same order.
    based = {**study, "id": "s3", "started": "2025-09-01", "basedOn": [{"reference": "ServiceRequest/o1/_history/2"}]}
    by_type = {"ServiceRequest": [sr, draft, chest], "ImagingStudy": [result, orphan, based]}
    orders = find_orders(pathway, by_type, (date(2025, 1, 1), date(2025, 12, 31)), 30)
    assert [(o.ref, o.day, o.category) for o in orders] == [
        ("ServiceRequest/o1", date(2025, 3, 1), "MRI"), ("ImagingStudy/s2", date(2025, 4, 1), "MRI")]
    assert [r["id"] for r in orders[0].footprint] == ["s1", "s3"]
    assert orders[1].draft["code"]["coding"] == mri["coding"] and orders[1].draft["status"] == "draft"
    assert find_orders(pathway, by_type, (date(2025, 3, 2), date(2025, 3, 31)), 30) == []


def test_studies_at_the_ends_of_the_calendar_are_matched_without_overflow(rules: Rules) -> None:
    """FHIR allows any year from 1 to 9999: a study on 1 January of year 1 once crashed the whole audit
    (30 days before it is not a date)."""
    pathway = LivePathway(rules, audit_service(rules, None))
    mri = _code(rules, "lumbar-imaging", modality="MRI", contrast=False)
    early = {"resourceType": "ImagingStudy", "id": "early", "status": "available", "procedureCode": [mri],
             "started": "0001-01-01"}
    late = {**early, "id": "late", "started": "9999-12-31"}
    order = {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order", "code": mri,
             "authoredOn": "0001-01-01"}
    by_type = {"ServiceRequest": [order], "ImagingStudy": [early, late]}
    orders = find_orders(pathway, by_type, (date.min, date.max), 30)
    assert [(o.ref, [r["id"] for r in o.footprint]) for o in orders] == [
        ("ServiceRequest/o1", ["early"]), ("ImagingStudy/late", ["late"])]


def test_who_ordered_where_is_read_through_versioned_and_absolute_references() -> None:
    order = AuditedOrder("ServiceRequest/o1", date(2025, 3, 1), "ServiceRequest", "MRI", {}, {
        "requester": {"reference": "https://ehr.example.org/fhir/PractitionerRole/r1/_history/2"},
        "encounter": {"reference": "Encounter/e1/_history/4"}})
    catalogue = {"PractitionerRole/r1": {"practitioner": {"reference": "Practitioner/d1/_history/1"},
                                         "organization": {"reference": "Organization/h1"}},
                 "Practitioner/d1": {"name": [{"text": "Ada Quill"}]}, "Organization/h1": {"name": "North Clinic"},
                 "Location/l1": {"name": "Spine Unit"}}
    encounters = {"Encounter/e1": {"location": [{"location": {"reference": "Location/l1/_history/3"}}]}}
    assert _dimensions(order, encounters, catalogue) == {
        "month": "2025-03", "category": "MRI", "source": "ServiceRequest",
        "practitioner": "Ada Quill", "organization": "North Clinic", "location": "Spine Unit"}


def test_an_orders_clinic_and_place_are_read_from_its_encounter(rules: Rules) -> None:
    """The judge passes each patient's encounters to the report's dimensions (orders named by a bare
    Practitioner, as many EHRs write them)."""
    subject = {"reference": "Patient/p1"}
    resources = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": subject,
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "serviceProvider": {"reference": "Organization/h1"}, "location": [{"location": {"reference": "Location/l1"}}]},
        {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order", "subject": subject,
         "code": _code(rules, "lumbar-imaging", modality="MRI", contrast=False), "authoredOn": DAY.isoformat(),
         "requester": {"reference": "Practitioner/d1"}, "encounter": {"reference": "Encounter/e1"}},
        {"resourceType": "Organization", "id": "h1", "name": "North Clinic"},
        {"resourceType": "Location", "id": "l1", "name": "Spine Unit"},
    ]
    judge = tracing_judge(rules, DAY)
    counts = judge_lines(judge, [orjson.dumps(r) for r in resources]).counts
    assert counts[("orders", "organization", "North Clinic", "orders")] == 1
    assert counts[("orders", "location", "Spine Unit", "orders")] == 1


def test_lines_go_to_their_patient_parsed_only_when_it_is_unclear() -> None:
    line = orjson.dumps({"resourceType": "Condition", "subject": {"reference": "Patient/p-1"}})
    assert route(line, "Condition") == ("p-1", None)
    absolute = orjson.dumps({"resourceType": "Observation", "subject": {"reference": "https://x.org/fhir/Patient/p-2"}})
    assert route(absolute, None) == ("p-2", None)
    two = {"resourceType": "Encounter", "subject": {"reference": "Patient/p-3"},
           "basedOn": [{"reference": "Patient/p-9"}]}
    pid, parsed = route(orjson.dumps(two), "Encounter")
    assert pid == "p-3" and parsed == two
    patient = {"resourceType": "Patient", "id": "p-4", "link": [{"other": {"reference": "Patient/p-5"}}]}
    assert route(orjson.dumps(patient), None)[0] == "p-4"
    assert route(orjson.dumps({"resourceType": "Medication", "id": "m"}), "Medication")[0] is None
    with pytest.raises(ValueError):
        route(b"[1, 2]", None)
    # Only a FHIR id names a patient, parsed or not: a tab or a line end would split a partition's line.
    for bad in ("x\ty", "x\ny", "x y", "x" * 65, ""):
        assert route(orjson.dumps({"resourceType": "Patient", "id": bad}), "Patient")[0] is None, bad
        for file_type in ("Condition", None):  # a file of several types parses a line with no clear reference
            assert route(orjson.dumps({"resourceType": "Condition", "subject": {"reference": f"Patient/{bad}"}}),
                         file_type)[0] is None, bad
    assert route(orjson.dumps({"resourceType": "Patient", "id": "x" * 64}), "Patient")[0] == "x" * 64


def test_file_pieces_read_every_line_exactly_once(tmp_path: Any) -> None:
    path = tmp_path / "Condition.000.ndjson"
    lines = [orjson.dumps({"n": i, "pad": "x" * (i % 7)}) for i in range(500)]
    # Windows line ends, blank lines and a last line without its newline are all read as lines.
    ends = [b"\r\n" if i % 5 == 0 else b"\n\n" if i % 7 == 0 else b"\n" for i in range(len(lines))]
    path.write_bytes(b"".join(line + end for line, end in zip(lines, ends, strict=True))[:-1])
    size = path.stat().st_size
    for target in (1, 17, 100, size // 3, size):
        pieces = chunks([InputFile(path, None, size)], target)
        for block in (1, 2, 7, 64, 1 << 20):  # blocks that end anywhere in a line, piece or file
            got = [line for _, start, end in pieces for lines_read in line_blocks(path, start, end, block)
                   for line in lines_read]
            assert got == lines, (target, block)
        assert [line for lines_read in line_blocks(path, block=7) for line in lines_read] == lines  # whole
    assert type_from_name("1.Observation.003.ndjson.gz") == "Observation" and type_from_name("x.ndjson") is None


def _open_in(folder: Path) -> list[str]:
    """The files under `folder` this process holds open (Linux: /proc/self/fd)."""
    return [target for fd in os.listdir("/proc/self/fd")
            if (target := os.path.realpath(f"/proc/self/fd/{fd}")).startswith(str(folder.resolve()))]


def test_partition_files_are_appended_to_with_few_open_at_once(tmp_path: Path) -> None:
    # Many more partitions than files it may hold open: the least recently written is closed, and
    # reopened to append, so no line is lost and an audit of thousands of partitions never runs out.
    out = PartitionFiles(tmp_path, "w", max_open=2)
    expected: dict[int, list[bytes]] = {p: [] for p in range(5)}
    for turn in range(3):
        for p in (0, 1, 2, 3, 4, 0, 0, 3):
            data = f"{turn}-{p}-{len(expected[p])}\n".encode()
            out.write(p, data)
            expected[p].append(data)
            assert len(_open_in(tmp_path)) <= 2
    out.flush()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == {
        f"part-{p:05d}-w.ndjson": b"".join(written) for p, written in expected.items()}
    out.close()
    assert not _open_in(tmp_path)


def test_a_worker_never_runs_out_of_open_files(tmp_path: Path) -> None:
    # Under a limit of 64 open files (the usual one is 1,024), 200 partitions are written twice over, in
    # a process of its own: it holds half its limit open, never more.
    code = ("import resource, sys\nfrom pathlib import Path\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "from cds_hooks.audit.partition import PartitionFiles, open_budget\n"
            "with PartitionFiles(Path(sys.argv[1]), 'w') as out:\n"
            "    for turn in range(2):\n"
            "        for p in range(200):\n"
            "            out.write(p, b'%d\\n' % p)\n"
            "print(open_budget())\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "32"
    assert all((tmp_path / f"part-{p:05d}-w.ndjson").read_bytes() == b"%d\n%d\n" % (p, p) for p in range(200))


def test_a_worker_writes_one_file_per_partition_whatever_pieces_it_routes(tmp_path: Path) -> None:
    path = tmp_path / "Condition.ndjson"
    lines = [orjson.dumps({"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/p{i}"}})
             for i in range(60)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    pieces = chunks([InputFile(path, "Condition", path.stat().st_size)], path.stat().st_size // 4)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        routed = [engine_local._route_piece(piece, 3, str(scratch), Sieve({})).lines for piece in pieces]
        # Read while the worker still holds them open, as the other workers judging do.
        files = sorted(scratch.iterdir())
        written = sorted(row.partition(b"\t")[2] for f in files for row in f.read_bytes().splitlines())
    finally:
        assert engine_local._ROUTED is not None
        engine_local._ROUTED.close()
    assert len(pieces) >= 4 and sum(routed) == len(lines)
    assert [f.name for f in files] == [f"part-{p:05d}-{os.getpid()}.ndjson" for p in range(3)]
    assert written == sorted(lines)


def test_small_cells_are_hidden_and_cannot_be_worked_out() -> None:
    assert [suppress.cell(n, 11) for n in (0, 1, 10, 11)] == [0, "<11", "<11", 11]
    assert suppress.series([50, 3, 20, 0], 11) == [50, "<11", "<11", 0]  # the next smallest hides with it
    assert suppress.series([50, 3, 4, 0], 11) == [50, "<11", "<11", 0]
    assert suppress.rate(10, 40, 11) is None and suppress.rate(35, 40, 11) is None  # the complement is 5
    assert suppress.rate(20, 40, 11) == 0.5
    rows = [{"who": "a", "orders": 40}, {"who": "b", "orders": 12}, {"who": "c", "orders": 3}]
    pooled = suppress.pooled_rows(rows, "orders", "who", 11)
    assert [r["who"] for r in pooled] == ["a", suppress.OTHER] and pooled[1]["orders"] == 15


def _evidence_record(rules: Rules, pathway: LivePathway, items: list[dict[str, Any]], born: str) -> Any:
    return pathway.record("p", [{"resourceType": "Patient", "id": "p", "birthDate": born}, *items], {})


@pytest.mark.parametrize(("imaged_after", "trauma_before", "expect"), [
    (28, None, ("denominator", True)), (29, None, ("denominator", False)),
    (10, 90, ("excluded", False)), (10, 91, ("denominator", True)),
])
def test_the_measure_windows(rules: Rules, imaged_after: int, trauma_before: int | None,
                             expect: tuple[str, bool]) -> None:
    pathway = LivePathway(rules, audit_service(rules, None))
    hedis = next(m for m in load_measures(rules) if m.id == "hedis-lbp")
    index = date(2025, 3, 1)
    items: list[dict[str, Any]] = [
        {"resourceType": "Condition", "id": "lbp", "code": _code(rules, "population"),
         "subject": {"reference": "Patient/p"}, "onsetDateTime": index.isoformat()},
        {"resourceType": "ImagingStudy", "id": "img", "status": "available", "subject": {"reference": "Patient/p"},
         "procedureCode": [_code(rules, "lumbar-imaging", modality="MRI", contrast=False)],
         "started": (index + timedelta(days=imaged_after)).isoformat()},
    ]
    if trauma_before is not None:
        items.append({"resourceType": "Condition", "id": "tr", "subject": {"reference": "Patient/p"},
                      "code": _code(rules, "red-flag", category="trauma"),
                      "onsetDateTime": (index - timedelta(days=trauma_before)).isoformat()})
    record = _evidence_record(rules, pathway, items, "1980-05-05")
    result = evaluate_measure(hedis, record, (date(2025, 1, 1), date(2025, 12, 31)))
    assert result is not None and (result.status, result.imaged) == expect
    # Age band: 76 at the end of the period is outside HEDIS's 18-75.
    old = evaluate_measure(hedis, _evidence_record(rules, pathway, items, "1949-12-31"),
                           (date(2025, 1, 1), date(2025, 12, 31)))
    assert old is not None and old.status == "outside-age"
    # A diagnosis after the intake period (Dec 3) is no index.
    assert evaluate_measure(hedis, record, (date(2024, 3, 30), date(2025, 3, 28))) is None


def test_the_measure_windows_reach_the_end_of_the_calendar(rules: Rules) -> None:
    """An audit period may end on 9999-12-31, the last day FHIR allows: a window past it ends there."""
    pathway = LivePathway(rules, audit_service(rules, None))
    index = date(9999, 12, 3)  # the last day of the intake period: the imaging window ends on the last day
    items = [{"resourceType": "Condition", "id": "lbp", "code": _code(rules, "population"),
              "subject": {"reference": "Patient/p"}, "onsetDateTime": index.isoformat()},
             {"resourceType": "ImagingStudy", "id": "img", "status": "available", "subject": {"reference": "Patient/p"},
              "procedureCode": [_code(rules, "lumbar-imaging", modality="MRI", contrast=False)],
              "started": "9999-12-31"}]
    record = _evidence_record(rules, pathway, items, "9960-05-05")
    for measure in load_measures(rules):
        result = evaluate_measure(measure, record, (date(9999, 1, 1), date.max))
        assert result is not None and (result.status, result.imaged) == ("denominator", True), measure.id
    # An order warned about on the last day: the follow-up window for a late red flag ends there too.
    mri = {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p"}, "authoredOn": "9999-12-31",
           "code": _code(rules, "lumbar-imaging", modality="MRI", contrast=False)}
    lines = [orjson.dumps(r) for r in [{"resourceType": "Patient", "id": "p", "birthDate": "9960-05-05"},
                                       items[0], mri]]
    judge = tracing_judge(rules, date.max)
    judge_lines(judge, lines)
    assert judge.trace == [("p", "ServiceRequest/o1", frozenset({"imaging-premature"}), "warned")]


def test_the_corticosteroid_exclusion_reads_a_diagnosis_not_a_prescription(rules: Rules) -> None:
    """HEDIS excludes 90+ days of corticosteroids, which the measure cannot count: it stands in with a
    long-term-use diagnosis (`resource_types: [Condition]`), so one prednisone prescription excludes no one."""
    pathway = LivePathway(rules, audit_service(rules, None))
    hedis = next(m for m in load_measures(rules) if m.id == "hedis-lbp")
    index = date(2025, 3, 1)
    steroid = next(vs for vs in rules.valuesets.values() if vs.kind == "red-flag" and vs.category == "steroid-use"
                   and not vs.published)
    diagnosis = next(c for c in steroid.codes if "icd-10" in c.system)
    drug = next(c for c in steroid.codes if "rxnorm" in c.system)
    lbp = {"resourceType": "Condition", "id": "lbp", "code": _code(rules, "population"),
           "subject": {"reference": "Patient/p"}, "onsetDateTime": index.isoformat()}
    prescription = {"resourceType": "MedicationRequest", "id": "rx", "status": "active", "intent": "order",
                    "subject": {"reference": "Patient/p"}, "authoredOn": (index - timedelta(days=30)).isoformat(),
                    "medicationCodeableConcept": {"coding": [{"system": drug.system, "code": drug.code}]}}
    status = {"resourceType": "Condition", "id": "z79", "subject": {"reference": "Patient/p"},
              "code": {"coding": [{"system": diagnosis.system, "code": diagnosis.code}]},
              "onsetDateTime": (index - timedelta(days=30)).isoformat()}
    period = (date(2025, 1, 1), date(2025, 12, 31))
    with_drug = evaluate_measure(hedis, _evidence_record(rules, pathway, [lbp, prescription], "1980-05-05"), period)
    assert with_drug is not None and with_drug.status == "denominator"
    with_status = evaluate_measure(hedis, _evidence_record(rules, pathway, [lbp, status], "1980-05-05"), period)
    assert with_status is not None and with_status.status == "excluded" and "corticosteroids" in with_status.exclusions


def test_the_audit_includes_the_medication_a_reference_names_as_the_live_reader_reads_it(rules: Rules) -> None:
    # A Bulk export keeps Medications apart (the catalogue); the audit's prefetch must include the one each
    # reference names, by id, full URL or version, or its record would differ from the live service's.
    pathway = LivePathway(rules, audit_service(rules, None))
    naproxen = {"resourceType": "Medication", "id": "nap",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7258"}]}}
    for reference in ("Medication/nap", "https://ehr.example/fhir/Medication/nap", "Medication/nap/_history/2"):
        request = {"resourceType": "MedicationRequest", "id": "rx", "status": "completed", "intent": "order",
                   "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-03-01",
                   "medicationReference": {"reference": reference}}
        record = pathway.record("p1", [request], {"Medication/nap": naproxen})
        assert [e.categories("conservative-care") for e in record.items] == [{"nsaid"}], reference
