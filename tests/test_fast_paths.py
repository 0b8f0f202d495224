"""Every shortcut the audit takes for speed gives the answer of the slow way it replaces: validation
verdicts learned element by element (and by field type), the prefetch's code filter, the reader's memo of
one patient's resources (test_read_memo.py has its own), the measures' record (only what they ask about,
only for a patient with an index date), routing a line by its one Patient reference, and the split of the
input across cores."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Strict, model_validator

from cds_hooks.audit import engine_local
from cds_hooks.audit.adapter import LivePathway, code_filter
from cds_hooks.audit.audit_rules import Exclusion, load_measures
from cds_hooks.audit.engine_local import pieces_for
from cds_hooks.audit.judge import AuditOptions, PatientJudge, _may_answer
from cds_hooks.audit.measure import _by_meaning
from cds_hooks.audit.ndjson import discover, read_piece
from cds_hooks.audit.partition import _PATIENT_REF, owner, patient_refs
from cds_hooks.audit.run import audit_service
from cds_hooks.audit.synth import generate
from cds_hooks.fhir import element_verdicts, resources
from cds_hooks.fhir.element_verdicts import ElementVerdicts, covered
from cds_hooks.fhir.limits import deeper_than
from cds_hooks.pathway.facts import READ_ELEMENTS, read_part
from cds_hooks.pathway.rules import Rules
from tests import chart
from tests.audit_data import as_if_read, judge_lines, tracing_judge

PERIOD_END = date(2025, 12, 31)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory, rules: Rules) -> Path:
    out = tmp_path_factory.mktemp("fast-paths")
    generate(rules, 60, out, seed=5, visits_per_year=4, years=2)
    return out


def _resources(population: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted(population.glob("*.ndjson"))
            for line in path.read_bytes().splitlines()]


# ---- validation verdicts learned element by element ------------------------------------------------

_JUNK: list[Any] = [None, [None], [], {}, "", " ", "2024-13-45", "2024-03-17T10:00:00", 12, 3.5, True,
                    {"unknown": 1}, [{"coding": [{"system": 5}]}], {"reference": ""}, {"coding": None},
                    {"value": "hot"}, [[{}]], {"extension": []}]
_EXTRA_KEYS = ["_status", "_effectiveDateTime", "_recordedDate", "_authoredOn", "foo", "class_fhir",
               "status__ext", "effectivePeriod", "onsetPeriod", "onsetString", "performedPeriod", "id"]


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"extension": [value]}
    return value


def _mutants(parts: list[dict[str, Any]], rnd: random.Random, n: int) -> list[dict[str, Any]]:
    """Resources built from the parts of valid ones (what the shortcut trusts), values valid in another field
    or resource type (what the shortcut trusts by field type), and broken ones."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        by_type.setdefault(part["resourceType"], []).append(part)
    anywhere = [value for part in parts for key, value in part.items() if key != "resourceType"]
    out = []
    for _ in range(n):
        rtype = rnd.choice(sorted(by_type))
        mutant = dict(rnd.choice(by_type[rtype]))
        donor = rnd.choice(by_type[rtype])
        for key in [k for k in donor if k != "resourceType"]:
            if rnd.random() < 0.5:
                mutant[key] = donor[key]  # recombined: each value valid somewhere
        roll = rnd.random()
        keys = [k for k in mutant if k != "resourceType"]
        if roll < 0.15 and keys:
            del mutant[rnd.choice(keys)]  # a required element may go
        elif roll < 0.35 and keys:
            mutant[rnd.choice(keys)] = rnd.choice(_JUNK)
        elif roll < 0.45:
            extension = {"extension": [{"url": "http://x", "valueCode": "a"}]}
            mutant[rnd.choice(_EXTRA_KEYS)] = rnd.choice([*_JUNK, extension, "2024-03-17", {"start": "2024-01-01"}])
        elif roll < 0.5 and keys:
            mutant[rnd.choice(keys)] = _deep(70)
        elif roll < 0.6 and keys:
            mutant[rnd.choice(keys)] = rnd.choice(anywhere)  # valid in some field of some resource type
        out.append(mutant)
    return out


def test_learned_verdicts_never_pass_a_resource_its_model_refuses(
        population: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [read_part(r) for r in _resources(population) if r["resourceType"] in READ_ELEMENTS]
    rnd = random.Random(7)
    originals = parts[:: max(1, len(parts) // 400)]
    seen = {orjson.dumps(p) for p in parts}
    resources.clear_validation_cache()
    taken: list[bool] = []
    real_known_valid = ElementVerdicts.known_valid

    def spied(self: ElementVerdicts, resource: dict[str, Any], model: Any) -> bool:
        taken.append(real_known_valid(self, resource, model))
        return taken[-1]

    monkeypatch.setattr(ElementVerdicts, "known_valid", spied)
    alone: Counter[bool] = Counter()  # values new to the learned verdicts, validated alone: passed or not
    real_alone = element_verdicts._valid_alone

    def spied_alone(model: Any, key: str, value: Any) -> bool:
        alone[verdict := real_alone(model, key, value)] += 1
        return verdict

    monkeypatch.setattr(element_verdicts, "_valid_alone", spied_alone)
    outcomes: Counter[tuple[bool, bool, bool]] = Counter()  # (new combination, shortcut taken, valid)
    for candidate in originals + _mutants(parts, rnd, 2500):
        resources._VERDICTS.clear()  # the whole-resource cache would answer repeats before the shortcut
        taken.clear()
        fast = resources.validate_resource(candidate)
        if deeper_than(candidate):
            assert fast is not None and fast.startswith("nesting"), candidate
        else:
            assert fast == resources._validate(candidate), candidate  # the model itself, every time
        outcomes[(orjson.dumps(candidate) not in seen, any(taken), fast is None)] += 1
    assert outcomes[(True, True, True)] > 200, outcomes  # new combinations passed by the shortcut
    assert outcomes[(True, False, False)] > 200, outcomes  # and broken ones left to the model
    assert alone[True] > 200 and alone[False] > 100, alone  # new values learned alone, junk refused alone


_TEMPERATURE = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}
_ABSENT = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}


@pytest.mark.parametrize(("donors", "combined"), [
    # A missing status explained by an extension, and an extension that explains nothing beside a status.
    ([{"code": _TEMPERATURE, "_status": _ABSENT}, {"status": "final", "code": _TEMPERATURE, "_status": {"id": "x"}}],
     {"code": _TEMPERATURE, "_status": {"id": "x"}}),
    # Each valid with one of effective[x] null: together, two of them.
    ([{"status": "final", "code": _TEMPERATURE, "effectiveDateTime": None, "effectivePeriod": {"start": "2024-01-01"}},
      {"status": "final", "code": _TEMPERATURE, "effectiveDateTime": "2024-01-01", "effectivePeriod": None}],
     {"status": "final", "code": _TEMPERATURE, "effectiveDateTime": "2024-01-01",
      "effectivePeriod": {"start": "2024-01-01"}}),
], ids=["primitive-extension", "choice-type"])
def test_parts_that_only_hold_together_are_not_trusted_apart(donors: list[dict[str, Any]],
                                                            combined: dict[str, Any]) -> None:
    resources.clear_validation_cache()
    for donor in donors:
        assert resources.validate_resource({"resourceType": "Observation", **donor}) is None
    candidate = {"resourceType": "Observation", **combined}
    verdict = resources.validate_resource(candidate)
    assert verdict is not None and verdict == resources._validate(candidate)


_UNIT = {"unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}


@pytest.mark.parametrize("keep_whole_cache", [True, False], ids=["whole-resource-cache", "element-verdicts"])
@pytest.mark.parametrize(("seen", "other"), [
    (None, math.nan), (None, math.inf),  # orjson writes NaN and infinities as null
    ("2024-01-01", date(2024, 1, 1)),  # and a date as its string
], ids=["nan", "infinity", "date"])
def test_values_orjson_writes_alike_are_not_taken_for_each_other(seen: Any, other: Any, keep_whole_cache: bool) -> None:
    def observation(value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "code": {**_TEMPERATURE, "text": "t"},
                "valueQuantity": {**_UNIT, "value": value} if seen is None else _UNIT,
                **({} if seen is None else {"note": [{"text": value}]})}

    resources.clear_validation_cache()
    assert resources.validate_resource(observation(seen)) is None
    if not keep_whole_cache:
        resources._VERDICTS.clear()
    candidate = observation(other)
    verdict = resources.validate_resource(candidate)
    assert verdict is not None and verdict == resources._validate(candidate)


def test_the_learned_verdicts_stay_within_their_cap_whatever_the_input() -> None:
    base = resources._model("Observation")
    verdicts = ElementVerdicts(limit=1024)
    optional = ["id", "language", "implicitRules", "issued", "valueString", "bodySite", "method", "note"]
    values = {"id": "i", "language": "en", "implicitRules": "http://x", "issued": "2024-01-01T00:00:00Z",
              "valueString": "v", "bodySite": {"text": "b"}, "method": {"text": "m"}, "note": [{"text": "n"}]}
    first = {"resourceType": "Observation", "status": "final", "code": {"text": "0"}}
    for n in range(3000):  # a new value every time, and every one of the 256 key sets many times over
        resource = {**first, "code": {"text": str(n)}}
        resource.update({key: values[key] for bit, key in enumerate(optional) if n >> bit & 1})
        verdicts.learn(resource, base, base.model_validate(resource))
        assert len(verdicts.elements) <= 1024 and len(verdicts.shapes) <= 1024 // 32
        assert verdicts.known_valid(resource, base)  # what was just learned is still known
    assert not set(verdicts._parts(first, base)[1]) <= verdicts.elements  # and the oldest was forgotten
    assert {len(digest) for digest in verdicts.elements} == {16}  # 16-byte digests, as the cap's size assumes


def test_the_caps_are_reached_exactly_and_never_passed() -> None:
    base = resources._model("Observation")
    limit = 98  # 98 // 32 = 3 key sets (not 98 / 32, nor 98 // 33)
    verdicts = ElementVerdicts(limit=limit)

    def learn(resource: dict[str, Any]) -> None:
        verdicts.learn(resource, base, base.model_validate(resource))

    sizes = []
    for n in range(100):  # one key set; each resource adds one new value beside its known status
        learn({"resourceType": "Observation", "status": "final", "code": {"text": str(n)}})
        sizes.append(len(verdicts.elements))
    # A learning counts all four of its digests against the cap (each element, and its value as its field's
    # type), two of them new: the set fills to exactly the limit (94 + 4), then starts again (twice in 100).
    assert max(sizes) == limit - 2 and sizes.count(4) == 3
    verdicts.clear()
    key_sets = [{"issued": "2024-01-01T00:00:00Z"}, {"language": "en"}, {"method": {"text": "m"}},
                {"note": [{"text": "n"}]}]
    shapes = []
    for extra in key_sets:
        learn({"resourceType": "Observation", "status": "final", "code": {"text": "t"}, **extra})
        shapes.append(len(verdicts.shapes))
    assert shapes == [1, 2, 3, 1]  # three key sets kept, the fourth makes room by forgetting


def test_a_resource_past_the_depth_limit_is_never_learned_from() -> None:
    base = resources._model("Observation")
    deep = {"resourceType": "Observation", "status": "final",
            "code": {**_TEMPERATURE, "extension": [_extension(resources.MAX_DEPTH)]}}
    verdicts = ElementVerdicts()
    verdicts.learn(deep, base, base.model_validate(deep))  # valid for its model, but deeper than the limit
    assert verdicts.shapes == set() and not verdicts.known_valid(deep, base)


def _extension(levels: int) -> dict[str, Any]:
    """A valid extension nested `levels` deep."""
    value: dict[str, Any] = {"url": "http://x", "valueCode": "a"}
    for _ in range(levels - 1):
        value = {"url": "http://x", "extension": [value]}
    return value


def test_a_value_new_to_a_known_key_set_is_validated_alone_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    resources.clear_validation_cache()
    base = {"resourceType": "Observation", "status": "final", "code": _TEMPERATURE,
            "subject": {"reference": "Patient/a"}, "effectiveDateTime": "2024-03-17", "valueQuantity": _UNIT}
    assert resources.validate_resource(base) is None  # its key set and values, learned
    models: list[str] = []
    real_validate = resources._validate
    monkeypatch.setattr(resources, "_validate", lambda r: models.append(r["resourceType"]) or real_validate(r))

    def fresh(n: int, **changes: Any) -> dict[str, Any]:
        resources._VERDICTS.clear()
        models.clear()
        news = {"subject": {"reference": f"Patient/b{n}"}, "effectiveDateTime": f"2024-03-{n:02d}",
                "valueQuantity": {**_UNIT, "value": 36 + n / 10}, "status": "amended"}
        return {**base, **dict(list(news.items())[:n]), **changes}

    # Up to ALONE_MAX new values are validated alone, never by the model; one more, by the model at once.
    assert element_verdicts.ALONE_MAX == 3
    assert resources.validate_resource(fresh(3)) is None and models == []
    alone: list[str] = []
    real_alone = element_verdicts._valid_alone
    monkeypatch.setattr(element_verdicts, "_valid_alone", lambda m, k, v: alone.append(k) or real_alone(m, k, v))
    assert resources.validate_resource(fresh(3)) is None and alone == []  # learned: not validated alone again
    assert resources.validate_resource(fresh(4)) is None and models == ["Observation"]
    # A new value the field refuses, and a valid one nested past the depth limit, go to the model too.
    assert resources.validate_resource(fresh(1, effectiveDateTime="2024-02-30")) is not None and models
    deep = fresh(1, code={**_TEMPERATURE, "extension": [_extension(resources.MAX_DEPTH)]})
    assert (resources.validate_resource(deep) or "").startswith("nesting")
    shallow = fresh(1, code={**_TEMPERATURE, "extension": [_extension(8)]})
    assert resources.validate_resource(shallow) is None and models == []


def test_a_value_known_valid_as_one_field_is_known_as_any_field_of_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    resources.clear_validation_cache()
    subject = {"reference": "Patient/a"}
    condition = {"resourceType": "Condition", "code": {"text": "x"}, "subject": subject, "recordedDate": "2024-03-17"}
    procedure = {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/z"},
                 "performedDateTime": "2024-03-17"}
    assert resources.validate_resource(condition) is None and resources.validate_resource(procedure) is None
    alone: list[str] = []
    real_alone = element_verdicts._valid_alone
    monkeypatch.setattr(element_verdicts, "_valid_alone", lambda m, k, v: alone.append(k) or real_alone(m, k, v))
    other = {"reference": "Patient/b"}
    assert resources.validate_resource({**condition, "subject": other, "recordedDate": "2024-03-18"}) is None
    assert sorted(alone) == ["recordedDate", "subject"]
    alone.clear()
    # The same values in another resource type's fields of the same types: known, not validated again.
    assert resources.validate_resource({**procedure, "subject": other, "performedDateTime": "2024-03-18"}) is None
    assert alone == []
    # Learned from a whole resource too: the Condition's first subject, new to a Procedure.
    assert resources.validate_resource({**procedure, "subject": subject}) is None and alone == []
    # A value known as a dateTime is not known as a Reference: validated, and refused.
    assert resources.validate_resource({**procedure, "subject": "2024-03-18"}) is not None
    assert alone == ["subject"]


def test_fields_share_a_number_only_when_their_annotations_are_equal() -> None:
    class Fields(BaseModel):
        a: Annotated[str, Strict()]
        b: Annotated[str, Strict()]
        c: str
        d: Annotated[str, {"x": 1}]  # unhashable metadata: a number of its own
        e: Annotated[str, {"x": 1}]

    number = {name: element_verdicts._field_type(Fields, name)[0] for name in "abcde"}
    assert number["a"] == number["b"] and len({number["a"], number["c"], number["d"], number["e"]}) == 4
    assert element_verdicts._field_type(Fields, "d")[1].validate_python("v") == "v"


def test_the_shortcut_covers_the_models_the_reader_validates_and_no_other_kind() -> None:
    for rtype in READ_ELEMENTS:
        assert covered(resources._model(rtype)), rtype

    base = resources._model("Observation")

    class Stricter(base):  # type: ignore[misc, valid-type]
        @model_validator(mode="after")
        def no_final(self) -> Any:
            if self.status == "final":
                raise ValueError("no final")
            return self

    assert not covered(Stricter)

    class Stripping(base):  # type: ignore[misc, valid-type]
        model_config = ConfigDict(**base.model_config, str_strip_whitespace=True)  # changes how a value validates

    assert not covered(Stripping)
    verdicts = ElementVerdicts()
    valid = {"resourceType": "Observation", "status": "final", "code": {"text": "t"}}
    verdicts.learn(valid, Stricter, base.model_validate(valid))
    assert not verdicts.known_valid(valid, Stricter)


def test_a_population_is_judged_the_same_without_the_shortcuts(
        population: Path, rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [line for path in sorted(population.glob("*.ndjson")) for line in path.read_bytes().splitlines()]

    def judged() -> tuple[Counter[tuple[str, ...]], Counter[Any]]:
        resources.clear_validation_cache()
        judge = tracing_judge(rules, PERIOD_END)
        tally = judge_lines(judge, lines)
        return tally.counts, Counter(judge.trace or [])

    fast = judged()
    monkeypatch.setattr(ElementVerdicts, "known_valid", lambda *_: False)
    monkeypatch.setattr(LivePathway, "in_prefetch", lambda *_: True)
    monkeypatch.setattr("cds_hooks.audit.adapter.code_filter", lambda _: None)
    monkeypatch.setattr("cds_hooks.audit.judge.ReadMemo", lambda: None)  # every day's record read afresh
    monkeypatch.setattr("cds_hooks.audit.judge.EVIDENCE_KINDS", {})  # today's record of every resource
    monkeypatch.setattr("cds_hooks.audit.judge.index_date", lambda *_: date.min)  # every measure on it
    slow = judged()  # with no code filter there is no sieve either: every line is parsed
    # What the sieve passed over is counted as not asked for, not as resources (none of it is unreadable here).
    assert any(key[:2] == ("data", "unasked") for key in fast[0])
    assert not any(key[:2] == ("data", "unasked") for key in slow[0])
    assert (as_if_read(fast[0]), fast[1]) == slow
    assert fast[0][("orders", "all", "all", "red-flag")] > 0 and fast[0][("orders", "all", "all", "warned")] > 0
    assert fast[0][("measure", "hedis-lbp", "all", "all", "index")] > 0


# ---- the prefetch's code filter ------------------------------------------------------------------------

def _obs(*codings: tuple[str | None, str]) -> dict[str, Any]:
    return {"resourceType": "Observation", "code": {"coding": [
        {"code": c} if s is None else {"system": s, "code": c} for s, c in codings]}}


def test_the_code_filter_is_a_fhir_token_search() -> None:
    search = code_filter("Observation?patient={{context.patientId}}&code=http://loinc.org|8310-5,|local-1,"
                         "any-2,http://snomed.info/sct|&_sort=-date")
    assert search is not None
    assert search.matches(_obs(("http://loinc.org", "8310-5")).get("code"))
    assert not search.matches(_obs(("http://other.org", "8310-5")).get("code"))  # system|code: both
    assert search.matches(_obs((None, "local-1")).get("code"))  # |code: a coding without a system
    assert not search.matches(_obs(("http://loinc.org", "local-1")).get("code"))
    assert search.matches(_obs(("http://whatever", "any-2")).get("code"))  # code alone: any system
    assert search.matches(_obs(("http://snomed.info/sct", "123")).get("code"))  # system|: any code
    assert search.matches(_obs(("http://x", "no"), ("http://loinc.org", "8310-5")).get("code"))  # any coding
    assert not search.matches(None) and not search.matches({"text": "8310-5"})
    # What the audit cannot apply keeps every resource, as an EHR answering a plain search would.
    assert code_filter("Observation?patient=x") is None
    assert code_filter("Observation?patient=x&code:text=temperature") is None
    assert code_filter("MedicationRequest?patient=x&code=a|b") is None


def test_the_code_filter_takes_messy_codings_as_no_match(population: Path, rules: Rules) -> None:
    search = code_filter("Observation?code=http://loinc.org|8310-5,any-2,|local-1,http://snomed.info/sct|")
    assert search is not None
    for junk in ({"system": "http://loinc.org", "code": ["8310-5"]}, {"system": {"a": 1}, "code": "8310-5"},
                 {"system": ["http://snomed.info/sct"], "code": "1"}, {"system": 5, "code": "local-1"}):
        assert not search.matches({"coding": [junk]}), junk
    assert search.matches({"coding": [{"system": ["x"], "code": "any-2"}]})  # a code in any system
    assert search.matches({"coding": [{"system": "http://snomed.info/sct", "code": ["x"]}]})  # any code of it
    # A patient's messy Observations are left out, as an EHR's search would leave them, not a crash. (The
    # reader itself, given them in a prefetch, still stumbles on such a coding: not the audit's to mend.)
    lines = [line for path in sorted(population.glob("*.ndjson")) for line in path.read_bytes().splitlines()]
    subject = next(orjson.loads(line)["subject"] for line in lines if b'"Observation"' in line)
    messy = [orjson.dumps({"resourceType": "Observation", "id": f"messy-{n}", "status": "final", "subject": subject,
                           "effectiveDateTime": "2025-01-02", "code": {"coding": [coding]}})
             for n, coding in enumerate([{"system": "http://loinc.org", "code": ["8310-5"]},
                                         {"system": {"a": 1}, "code": "8310-5"}])]
    resources.clear_validation_cache()
    clean = judge_lines(tracing_judge(rules, PERIOD_END), lines).counts
    resources.clear_validation_cache()
    with_messy = judge_lines(tracing_judge(rules, PERIOD_END), lines + messy).counts
    assert with_messy - clean == Counter({("data", "resources", "Observation"): 2}) and not clean - with_messy


def test_the_prefetch_holds_only_the_observations_its_template_asks_for(rules: Rules) -> None:
    pathway = LivePathway(rules, audit_service(rules, None))
    template = next(t for t in pathway.service.prefetch.values() if t.startswith("Observation?"))
    system, code = template.split("code=", 1)[1].split("&")[0].split(",")[0].split("|")
    wanted, other = _obs((system, code)), _obs((system, "29463-7"))
    prefetch = pathway.prefetch([wanted, other], {})
    held = [e["resource"] for v in prefetch.values() if isinstance(v, dict) and v.get("resourceType") == "Bundle"
            for e in v["entry"]]
    assert wanted in held and other not in held
    assert pathway.in_prefetch(wanted) and not pathway.in_prefetch(other)


# ---- the measure's index of the record by meaning ------------------------------------------------------------

def test_the_measure_finds_by_meaning_what_evidence_has_finds(population: Path, rules: Rules) -> None:
    pathway = LivePathway(rules, audit_service(rules, None))
    patients: dict[str, list[dict[str, Any]]] = {}
    for res in _resources(population):
        patients.setdefault(str(owner(res)), []).append(res)
    meanings = {(vs.kind, c) for vs in rules.valuesets.values() for c in (None, vs.category)}
    asked: Counter[bool] = Counter()
    for pid, own in patients.items():
        record = pathway.record(pid, own, {})
        index = _by_meaning(record)
        for kind, category in meanings:
            expected = [e for e in record.items if e.has(kind, category)]
            assert index.get((kind, category), []) == expected, (kind, category)
            asked[category is None] += bool(expected)
        assert set(index) <= meanings
    assert asked[True] > 100 and asked[False] > 100, asked  # both forms, on records that have them


# ---- the record as it stands today, of what it is asked about -------------------------------------------------

def test_todays_record_leaves_out_only_what_no_question_is_about(rules: Rules) -> None:
    temperature, lbp = chart.temperature(39.5, 55), chart.lbp(onset=60)
    assert not _may_answer(temperature, frozenset({"red-flag", "population"}))
    assert _may_answer(temperature, frozenset({"red-flag", "vital-sign"}))
    assert _may_answer(lbp, frozenset({"red-flag"})) and _may_answer({"resourceType": "Encounter"}, frozenset({"x"}))
    # The built-in measures ask about no vital sign, so their record holds no body temperature; a measure
    # that excluded a fever would find the reading.
    hedis = next(m for m in load_measures(rules) if m.id == "hedis-lbp")
    category = next(vs.category for vs in rules.valuesets.values() if vs.kind == "vital-sign")
    fever = hedis.model_copy(update={"exclusions": [*hedis.exclusions, Exclusion(
        id="fever", kind="vital-sign", category=category, days_before=None, days_after=28)]})
    lines = [orjson.dumps(r) for r in (chart.patient(45), lbp, temperature)]
    for measure, expected in ((hedis, "denominator"), (fever, "excluded:fever")):
        judge = PatientJudge(LivePathway(rules, audit_service(rules, None)), [measure],
                             AuditOptions(period=(chart.TODAY - timedelta(days=365), chart.TODAY)))
        counts = judge_lines(judge, lines).counts
        assert counts[("measure", measure.id, "all", "all", expected)] == 1, counts
        excluded = [k[4] for k in counts
                    if k[:4] == ("measure", measure.id, "all", "all") and k[4].startswith("excluded:")]
        assert excluded == ([] if expected == "denominator" else [expected])


def test_a_measures_index_is_found_from_the_conditions_and_the_birth_date(rules: Rules) -> None:
    """The judge reads the rest of the record for a measure only when the Conditions (and the birth date an
    onset age is read against) give it an index date in the period."""
    for onset_age, indexed in ((45, 1), (47, 0)):  # born 46 years before today: onset a year ago, or ahead
        condition = {**chart.lbp(onset=None), "id": f"c-age-{onset_age}", "onsetAge": {"value": onset_age, "code": "a"}}
        lines = [orjson.dumps(r) for r in (chart.patient(46), condition)]
        counts = judge_lines(tracing_judge(rules, chart.TODAY), lines).counts
        for measure in load_measures(rules):
            assert counts[("measure", measure.id, "all", "all", "index")] == indexed, (onset_age, measure.id)


# ---- routing a line to its patient ------------------------------------------------------------------------

def test_routing_by_the_one_reference_finds_what_the_expression_finds() -> None:
    junk = [b'"', b"\\", b"/", b"Patient/", b"a", b"9", b"-", b".", b"_history/", b":", b"{", b" ", b"Patient",
            b'"reference":']
    rnd = random.Random(3)
    checked: Counter[tuple[bool, bool]] = Counter()
    for _ in range(40000):
        reference = b"".join([
            rnd.choice([b'"', b'\\"', b"", b'"a"']), rnd.choice([b"", b"http://h/fhir/", b"urn:", b"a/", b"\\/"]),
            b"Patient/", rnd.choice([b"p1", b"", b"a.b-9", b"x" * 64, b"y" * 65, b"p 1", b"p/1"]),
            rnd.choice([b"", b"/_history/3", b"/_history/", b"/x", b"/_history/\\"]), rnd.choice([b'"', b"", b'\\"'])])
        line = b"".join([*(rnd.choice(junk) for _ in range(rnd.randint(0, 4))), reference,
                         *(rnd.choice(junk) for _ in range(rnd.randint(0, 4)))])
        expected = set(_PATIENT_REF.findall(line))
        assert patient_refs(line) == expected, line
        checked[(line.count(b"Patient/") == 1, bool(expected))] += 1
    # The direct check decided both ways, and the expression still handles the rest.
    assert min(checked[(True, True)], checked[(True, False)]) > 1000 and checked[(False, True)] > 200, checked
    for line in (b'{"subject":{"reference":"Patient/p1"}}', b'{"subject":{"reference":"http://h/Patient/p1/_history/2"}}',
                 b'{"patient":"Patient/' + b"a" * 64 + b'"}'):
        assert patient_refs(line) == set(_PATIENT_REF.findall(line)) != set()
    assert patient_refs(b'{"reference":"Patient/' + b"a" * 65 + b'"}') == set()
    assert patient_refs(b'{"reference":"urn:Patient/p1"}') == set()


# ---- the input split across cores ---------------------------------------------------------------------------

def test_every_core_gets_pieces_and_every_line_is_read_once(population: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bulk = discover(population)
    monkeypatch.setattr(engine_local, "MIN_PIECE_BYTES", 1)  # this small population in many pieces
    pieces = pieces_for(bulk, 2)
    assert len(pieces) >= 16
    sizes = [end - start for _, start, end in pieces]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    expected = Counter(line.strip() for f in bulk.files for line in f.path.read_bytes().splitlines() if line.strip())
    assert Counter(line for piece in pieces for block in read_piece(*piece) for line in block) == expected
