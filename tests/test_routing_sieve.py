"""The routing sieve (`sieve.Sieve`) passes a line over only when no prefetch search can hold it:
unread, counted as not asked for, and every verdict as if it had been read."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest

from cds_hooks.audit.adapter import LivePathway
from cds_hooks.audit.audit_rules import load_measures
from cds_hooks.audit.judge import WHOLE_TYPES, AuditOptions, PatientJudge
from cds_hooks.audit.ndjson import discover
from cds_hooks.audit.partition import PartitionFiles, scan_piece
from cds_hooks.audit.run import audit_service
from cds_hooks.audit.sieve import Sieve
from cds_hooks.audit.synth import generate
from cds_hooks.pathway.rules import Rules
from tests.audit_data import as_if_read, judge_lines

PERIOD = (date(2025, 1, 1), date(2025, 12, 31))


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory, rules: Rules) -> Path:
    out = tmp_path_factory.mktemp("sieve")
    generate(rules, 40, out, seed=11, visits_per_year=4, years=2)
    return out


@pytest.fixture(scope="module")
def pathway(rules: Rules) -> LivePathway:
    return LivePathway(rules, audit_service(rules, None))


def _judge(rules: Rules, pathway: LivePathway) -> PatientJudge:
    judge = PatientJudge(pathway, load_measures(rules), AuditOptions(period=PERIOD))
    judge.trace = []
    return judge


def _asked(pathway: LivePathway) -> dict[str, set[str]]:
    """The codes each prefetch template's `code=` asks for, read from the templates themselves."""
    out: dict[str, set[str]] = {}
    for template in pathway.service.prefetch.values():
        rtype, _, query = template.partition("?")
        for param in query.split("&"):
            if param.startswith("code="):
                out.setdefault(rtype, set()).update(v.rpartition("|")[2] for v in param[5:].split(","))
    return out


def _observations(population: Path) -> list[bytes]:
    return (population / "Observation.ndjson").read_bytes().splitlines()


def test_the_sieve_looks_for_exactly_the_codes_the_templates_ask_for(rules: Rules, pathway: LivePathway) -> None:
    sieve = _judge(rules, pathway).sieve
    looked_for = {rtype: {n[1:-1].decode() for _, needles in groups for n in needles}
                  for rtype, groups in sieve.probes.values()}
    assert looked_for == {t: c for t, c in _asked(pathway).items() if t not in WHOLE_TYPES} != {}


def test_a_line_holding_an_asked_code_is_read_and_a_near_miss_passed_over(
        rules: Rules, pathway: LivePathway, population: Path) -> None:
    sieve = _judge(rules, pathway).sieve
    other = next(line for line in _observations(population) if sieve.passes_over(line))
    code = orjson.loads(other)["code"]["coding"][0]["code"].encode()
    assert sieve.passes_over(other) == "Observation" and b"\\" not in other
    for asked in sorted(_asked(pathway)["Observation"]):
        held = other.replace(b'"' + code + b'"', b'"' + asked.encode() + b'"')
        assert pathway.in_prefetch(orjson.loads(held)) and sieve.passes_over(held) is None, asked
        for near in (asked[:-1], asked + "5", "1" + asked, asked.replace("-", "")):  # not the code: not held
            missed = other.replace(b'"' + code + b'"', b'"' + near.encode() + b'"')
            assert not pathway.in_prefetch(orjson.loads(missed)) and sieve.passes_over(missed) == "Observation"
    # The type is the first key's value, up to its closing quote; the line need be no more than that.
    for line in (b'{"resourceType":"Observation"}', b'{"resourceType":"Observation" }',
                 b'{"resourceType":"Observation"'):
        assert sieve.passes_over(line) == "Observation"  # an Observation of no code, or unreadable
    for refused in (b'{"resourceType":"Observations"}', b'{"resourceType":"', b' {"resourceType":"Observation"}',
                    b'{"resourceType":"Condition"}', b'{"resourceType":"Observation","note":"a \\" quote"}'):
        assert sieve.passes_over(refused) is None, refused


def test_the_sieve_reads_each_kind_of_token_and_stands_aside_for_a_search_by_system(rules: Rules) -> None:
    service = audit_service(rules, None)
    key = next(k for k, t in service.prefetch.items() if t.startswith("Observation?"))

    def sieve_for(codes: str) -> Sieve:
        template = f"Observation?patient={{{{context.patientId}}}}&code={codes}"
        pathway = LivePathway(rules, service.model_copy(update={"prefetch": {**service.prefetch, key: template}}))
        return _judge(rules, pathway).sieve

    head = b'{"resourceType":"Observation","code":{"coding":[{"system":"http://snomed.info/sct","code":'
    sieve = sieve_for("http://loinc.org|8310-5,any-1,|local-2")
    assert [sieve.passes_over(head + c + b'"}]}}') for c in (b'"8310-5', b'"any-1', b'"local-2', b'"9')] == [
        None, None, None, "Observation"]
    # Any code of a system: its codes are not known, so nothing of the type is passed over.
    assert not sieve_for("http://loinc.org|8310-5,http://snomed.info/sct|").probes


def test_codes_with_different_openings_are_each_looked_for() -> None:
    sieve = Sieve({"Other": [], "Observation": ["8310-5", "8331-1", "1234", "x"]})
    assert list(sieve.probes) == [b"Observation"]  # a type asked for by no code has no sieve (and stops none)
    head = b'{"resourceType":"Observation","code":{"coding":[{"code":'
    for code in (b"8310-5", b"8331-1", b"1234", b"x"):
        assert sieve.passes_over(head + b'"' + code + b'"}]}}') is None, code
    for near in (b"8310", b"8331-", b"123", b"12345", b"xx", b"8", b""):
        assert sieve.passes_over(head + b'"' + near + b'"}]}}') == "Observation", near
    assert sieve.passes_over(head + b'"1","x"]}}') is None  # wherever the string is
    # Every opening like a code's is looked at, the first, the last and those between.
    for codes in ([b"8310-5", b"8399", b"8398"], [b"8399", b"8310-5", b"8398"], [b"8399", b"8398", b"8310-5"]):
        assert sieve.passes_over(head + b",".join(b'"' + c + b'"' for c in codes) + b"]}}") is None, codes
    assert sieve.passes_over(head + b'"8399","8398"]}}') == "Observation"
    assert sieve.passes_over(b'{"resourceType":"ObservationX') is None  # no end to the type: not read as one
    assert not Sieve({}).probes and not Sieve({"Observation": []}).probes and Sieve({"Observation": ["a"]}).probes


_EDITS = [
    lambda line, rnd: line[:rnd.randrange(len(line))],  # truncated
    lambda line, rnd: line.replace(b'"8', b'"\\u0038', 1),  # an escaped code
    lambda line, rnd: line.replace(b'"code":"', b'"code": "', 1),  # spacing
    lambda line, rnd: line[:-1] + b',"resourceType":"Condition"}',  # a second resourceType: the last counts
    lambda line, rnd: line[:-1] + b',"contained":[{"resourceType":"Observation","code":{"coding":[{"code":"x"}]}}]}',
    lambda line, rnd: line.replace(b'"resourceType":"Observation"', b'"resourceType":"Condition"', 1),
    lambda line, rnd: line.replace(b'"system":"http://loinc.org"', b'"system":"http://other.org"', 1),
    lambda line, rnd: line.replace(b'"code":{', b'"code":{"text":"8310-5",', 1),
    lambda line, rnd: line.replace(b'"code":"', b'"code":"8310-5","display":"', 1),
    lambda line, rnd: line.replace(b'"coding":[', b'"coding":[{"system":"http://loinc.org","code":"8331-1"},', 1),
    lambda line, rnd: line.replace(b'{"resourceType":"Observation",', b'{"resourceType":"Observation","x":1,', 1),
    lambda line, rnd: b'{"resourceType":"Observation"' + line[line.find(b","):],
    lambda line, rnd: line.replace(b"8310-5", b"8310-5 ", 1),
    lambda line, rnd: line,
]


def test_what_the_sieve_passes_over_no_prefetch_holds(rules: Rules, pathway: LivePathway, population: Path) -> None:
    sieve = _judge(rules, pathway).sieve
    rnd = random.Random(7)
    seen: Counter[str] = Counter()
    for line in _observations(population) * 3:
        edited = line
        for _ in range(rnd.randint(0, 3)):
            edited = rnd.choice(_EDITS)(edited, rnd) or b"{"
        try:
            resource = orjson.loads(edited)
        except orjson.JSONDecodeError:
            resource = None
        readable = isinstance(resource, dict) and isinstance(resource.get("resourceType"), str)
        held = readable and pathway.in_prefetch(resource)  # type: ignore[arg-type]
        passed = sieve.passes_over(edited)
        if passed is not None:
            assert not held, edited
            assert not readable or resource["resourceType"] == passed, edited  # type: ignore[index]
        seen[f"{'held' if held else 'readable' if readable else 'unreadable'} {'passed' if passed else 'read'}"] += 1
    # Both ways, on each kind of line (held lines are always read).
    assert min(seen["readable passed"], seen["readable read"], seen["unreadable passed"], seen["held read"]) > 20, seen


def test_types_the_judge_reads_whole_are_never_passed_over(rules: Rules, population: Path) -> None:
    """Even when the prefetch searches them by code: the orders to audit, and what they left, are found in
    every line, not only in what the prefetch holds."""
    service = audit_service(rules, None)
    prefetch = dict(service.prefetch)
    for key, template in service.prefetch.items():
        if template.split("?")[0] in ("Condition", "ServiceRequest", "Procedure", "DiagnosticReport"):
            prefetch[key] = template + "&code=http://snomed.info/sct|0,http://loinc.org|0"
    pathway = LivePathway(rules, service.model_copy(update={"prefetch": prefetch}))
    assert {"Condition", "ServiceRequest", "Procedure", "DiagnosticReport"} <= set(pathway.searched_codes())
    lines = [line for path in sorted(population.glob("*.ndjson")) for line in path.read_bytes().splitlines()]

    def judged(sieve: Sieve | None) -> tuple[Counter[tuple[str, ...]], Counter[object]]:
        judge = _judge(rules, pathway)
        if sieve is not None:
            judge.sieve = sieve
        return as_if_read(judge_lines(judge, lines).counts), Counter(judge.trace or [])

    with_sieve, without = judged(None), judged(Sieve({}))
    assert with_sieve == without
    assert with_sieve[0][("orders", "all", "all", "orders")] > 10
    # A sieve of every type searched by code would lose orders and diagnoses: the check above can fail.
    assert judged(Sieve(pathway.searched_codes())) != without


def test_the_local_engine_counts_what_it_passes_over_and_writes_the_rest(
        rules: Rules, pathway: LivePathway, population: Path, tmp_path: Path) -> None:
    sieve = _judge(rules, pathway).sieve
    [observations] = [f for f in discover(population).files if f.resource_type == "Observation"]
    with PartitionFiles(tmp_path, "t") as out:
        stats = scan_piece((observations, 0, observations.size), 3, out, sieve)
    lines = _observations(population)
    passed = [line for line in lines if sieve.passes_over(line)]
    written = [line.partition(b"\t")[2] for path in sorted(tmp_path.glob("part-*")) for line in
               path.read_bytes().splitlines()]
    assert stats.unasked == Counter({"Observation": len(passed)}) and stats.lines == len(lines)
    assert sorted(written) == sorted(line for line in lines if not sieve.passes_over(line)) and written
    assert len(passed) > len(lines) / 2
    # A line in a file of another type is routed and read as what it says, whatever it claims to be.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Procedure.ndjson").write_bytes(passed[0] + b"\n")
    [procedures] = discover(elsewhere).files
    with PartitionFiles(elsewhere, "t") as out:
        stats = scan_piece((procedures, 0, procedures.size), 3, out, sieve)
    assert not stats.unasked and len(list(elsewhere.glob("part-*"))) == 1
    assert sieve.sifts(None) and sieve.sifts("Observation") and not sieve.sifts("Procedure")
