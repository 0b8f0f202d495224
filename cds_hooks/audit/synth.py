"""`lumbar-cds synth`: a reproducible synthetic population as Bulk Data NDJSON, to audit and to load.

Seeded and per patient (patient i depends only on the seed and i), written streaming, one file per
resource type plus a Bulk manifest. Every clinical code comes from `rules/`: back pain, red flags,
conservative care, imaging, referrals and operations from the value sets (each red-flag category in
each code system it has), ordinary history and vital signs from rules/synthetic.yaml. The variety:
clean back-pain episodes imaged too early or after a trial of care, every red flag, old and resolved
episodes, repeat imaging, prior surgery, surgical referrals with and without physical therapy, drugs
named only in text, studies without an order, entered-in-error diagnoses, vital signs at every visit,
and unrelated history, across several clinics and practitioners.
"""

from __future__ import annotations

import gzip
import random
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from cds_hooks.audit import synth_people
from cds_hooks.audit.audit_rules import SynthFile, load_synthetic
from cds_hooks.pathway.rules import Code, Rules

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
AMBULATORY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
# Scenario → weight. Unrelated-only patients are the commonest, as in a real population.
SCENARIOS = {"no-back-pain": 30, "premature-imaging": 18, "imaging-after-care": 12, "red-flag": 12,
             "referral": 8, "care-only": 8, "repeat-imaging": 4, "prior-surgery": 3, "old-episode": 3,
             "unordered-study": 2}


class Vocabulary:
    """The codes the generator may write, by what they mean, all from rules/."""

    def __init__(self, rules: Rules, extra: SynthFile) -> None:
        def pick(pred: Any) -> list[Code]:
            return [c for vs in rules.valuesets.values() if pred(vs) for c in vs.codes if c.verified]

        self.back_pain = pick(lambda vs: vs.kind == "population")
        self.prior_surgery = pick(lambda vs: vs.kind == "lumbar-spine-surgery")
        # Red-flag codes as the pathway reads them: not excluded from their set, and an initial-encounter
        # 7th character where the category asks for one (rules/index.py).
        self.red_flags = {cat: [c for c in pick(lambda vs, cat=cat: vs.kind == "red-flag" and vs.category == cat)
                                if any(m.valueset.kind == "red-flag" and m.valueset.category == cat
                                       for m in rules.index.lookup(c.system, c.code))]
                          for cat in rules.pathway.red_flag_categories}
        self.red_flags = {cat: codes for cat, codes in self.red_flags.items() if codes}
        self.imaging = {(vs.modality, bool(vs.contrast)): [c for c in vs.codes if c.verified]
                        for vs in rules.valuesets.values() if vs.kind == "lumbar-imaging"}
        self.referral = pick(lambda vs: vs.kind == "surgical-referral")
        self.specialty = pick(lambda vs: vs.kind == "surgeon-specialty")
        self.care = {cat: pick(lambda vs, cat=cat: vs.kind == "conservative-care" and vs.category == cat)
                     for cat in rules.pathway.modalities}
        # Conservative-care modalities recognised from a coded medication (never from its name).
        self.drugs = sorted(cat for cat, codes in self.care.items() if any("rxnorm" in c.system for c in codes))
        self.pt_referral = rules.pt_referral["code"]
        self.extra = extra

    def concept(self, code: Code | Any) -> dict[str, Any]:
        return {"coding": [{"system": code.system, "code": code.code, "display": code.display}]}


class Writer:
    """One NDJSON file per resource type, opened on first use."""

    def __init__(self, out: Path, gz: bool) -> None:
        self.out, self.gz = out, gz
        self.files: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, resource: dict[str, Any]) -> None:
        rtype = resource["resourceType"]
        if rtype not in self.files:
            name = self.out / f"{rtype}.ndjson{'.gz' if self.gz else ''}"
            self.files[rtype] = gzip.open(name, "wb", compresslevel=3) if self.gz else name.open("wb")  # noqa: SIM115
        self.files[rtype].write(orjson.dumps(resource) + b"\n")
        self.counts[rtype] = self.counts.get(rtype, 0) + 1

    def close(self, transaction_time: str) -> None:
        for handle in self.files.values():
            handle.close()
        suffix = ".ndjson.gz" if self.gz else ".ndjson"
        manifest = {"transactionTime": transaction_time, "request": "synthetic", "requiresAccessToken": False,
                    "output": [{"type": t, "url": f"{t}{suffix}", "count": n} for t, n in sorted(self.counts.items())],
                    "error": []}
        (self.out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


class PatientBuilder:
    """One patient's history, from a generator seeded for that patient alone."""

    def __init__(self, vocab: Vocabulary, clinics: list[synth_people.Clinic], end: date, rng: random.Random,
                 index: int, emit: Any) -> None:
        self.v, self.rng, self.end, self.emit = vocab, rng, end, emit
        self.clinic = rng.choice(clinics)
        born = end - timedelta(days=rng.randint(18 * 365, 88 * 365))
        self.patient = synth_people.patient(rng, index, born.isoformat())
        self.pid = self.patient["id"]
        self.n = 0
        emit(self.patient)

    # ---- building blocks -------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.pid[3:]}-{self.n}"

    def _subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def _when(self, day: date) -> str:
        return day.isoformat() if self.rng.random() < 0.5 else f"{day.isoformat()}T{self.rng.randint(7, 18):02d}:" \
            f"{self.rng.randint(0, 59):02d}:00Z"

    def _doctor(self) -> dict[str, str]:
        return {"reference": f"Practitioner/{self.rng.choice(self.clinic.practitioners)['id']}"}

    def visit(self, day: date, type_code: Any = None, fever: bool = False) -> str:
        eid = self._id("enc")
        code = type_code or self.rng.choice(self.v.extra.unrelated.encounters.codes)
        self.emit({"resourceType": "Encounter", "id": eid, "status": "finished", "class": AMBULATORY,
                   "type": [self.v.concept(code)], "subject": self._subject(),
                   "period": {"start": self._when(day), "end": self._when(day)},
                   "participant": [{"individual": self._doctor()}],
                   "serviceProvider": {"reference": f"Organization/{self.clinic.organization['id']}"},
                   "location": [{"location": {"reference": f"Location/{self.clinic.location['id']}"}}]})
        self.vitals(day, eid, fever)
        return eid

    def vitals(self, day: date, encounter: str, fever: bool) -> None:
        vs = self.v.extra.vital_signs
        values = {"temperature": round(self.rng.uniform(38.4, 39.6) if fever else self.rng.uniform(36.2, 37.3), 1),
                  "weight": round(self.rng.uniform(50, 120), 1), "heart_rate": self.rng.randint(55, 105),
                  "systolic": self.rng.randint(100, 165)}
        for name, value in values.items():
            code = vs.codes[name]
            self.emit({"resourceType": "Observation", "id": self._id("obs"), "status": "final",
                       "category": [{"coding": [{"system": vs.category.system, "code": vs.category.code}]}],
                       "code": self.v.concept(code), "subject": self._subject(),
                       "encounter": {"reference": f"Encounter/{encounter}"}, "effectiveDateTime": day.isoformat(),
                       "valueQuantity": {"value": value, "unit": code.unit, "system": "http://unitsofmeasure.org",
                                         "code": code.unit}})

    def condition(self, code: Any, onset: date, resolved: date | None = None, error: bool = False) -> None:
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": self._id("cond"),
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "resolved" if resolved else "active"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION,
                                               "code": "entered-in-error" if error else "confirmed"}]},
            "code": self.v.concept(code), "subject": self._subject(),
            "onsetDateTime": onset.isoformat(),
            "recordedDate": self._when(onset + timedelta(days=self.rng.randint(0, 2))),
        }
        if resolved:
            res["abatementDateTime"] = resolved.isoformat()
        self.emit(res)

    def drug(self, category: str, day: date) -> None:
        codes = [c for c in self.v.care.get(category, ()) if "rxnorm" in c.system]
        if not codes:
            return
        concept = self.v.concept(self.rng.choice(codes))
        self.emit({"resourceType": "MedicationRequest", "id": self._id("med"), "status": "active",
                   "intent": "order", "medicationCodeableConcept": concept, "subject": self._subject(),
                   "authoredOn": self._when(day), "requester": self._doctor()})

    def pt_course(self, start: date, weeks: int) -> None:
        """A PT referral, an evaluation, then weekly sessions (as procedures, some as PT encounters)."""
        self.emit({"resourceType": "ServiceRequest", "id": self._id("sr"), "status": "completed", "intent": "order",
                   "code": self.v.pt_referral, "subject": self._subject(), "authoredOn": self._when(start),
                   "requester": self._doctor()})
        sessions = [c for c in self.v.care["formal-pt"] if "cpt" in c.system]
        for week in range(weeks + 1):
            day = start + timedelta(days=3 + 7 * week)
            if day > self.end:
                break
            code = self.rng.choice(sessions)
            self.emit({"resourceType": "Procedure", "id": self._id("proc"), "status": "completed",
                       "code": self.v.concept(code), "subject": self._subject(), "performedDateTime": self._when(day)})

    def imaging_order(self, day: date, modality: str, contrast: bool, reason: Any = None,
                      study: bool = True, ordered: bool = True) -> None:
        codes = self.v.imaging.get((modality, contrast)) or self.v.imaging[("MRI", False)]
        code = self.rng.choice(codes)
        encounter = self.visit(day)
        sid = self._id("sr")
        if ordered:
            order: dict[str, Any] = {"resourceType": "ServiceRequest", "id": sid,
                                     "status": self.rng.choice(("active", "completed", "completed")),
                                     "intent": "order", "code": self.v.concept(code), "subject": self._subject(),
                                     "encounter": {"reference": f"Encounter/{encounter}"},
                                     "authoredOn": self._when(day), "requester": self._doctor()}
            if reason is not None:
                order["reasonCode"] = [self.v.concept(reason)]
            self.emit(order)
        if study:
            when = min(day + timedelta(days=self.rng.randint(0, 14)), self.end)
            res: dict[str, Any] = {"resourceType": "ImagingStudy", "id": self._id("img"), "status": "available",
                                   "subject": self._subject(), "started": self._when(when),
                                   "procedureCode": [self.v.concept(code)],
                                   "location": {"reference": f"Location/{self.clinic.location['id']}"}}
            if ordered:
                res["basedOn"] = [{"reference": f"ServiceRequest/{sid}"}]
            else:
                res["referrer"] = self._doctor()
            self.emit(res)

    # ---- a life --------------------------------------------------------------------------------

    def background(self, years: int, visits_per_year: int) -> None:
        """Ordinary history: chronic conditions, their drugs, check-ups with vital signs, other orders."""
        extra = self.v.extra.unrelated
        start = self.end - timedelta(days=365 * years)
        for code in self.rng.sample(extra.conditions.codes, self.rng.randint(0, 4)):
            self.condition(code, start - timedelta(days=self.rng.randint(0, 3000)))
        for code in self.rng.sample(extra.medications.codes, self.rng.randint(0, 3)):
            self.emit({"resourceType": "MedicationRequest", "id": self._id("med"), "status": "active",
                       "intent": "order", "medicationCodeableConcept": self.v.concept(code),
                       "subject": self._subject(), "authoredOn": self._when(start), "requester": self._doctor()})
        for _ in range(years * visits_per_year):
            day = start + timedelta(days=self.rng.randint(0, 365 * years))
            self.visit(day)
            if self.rng.random() < 0.3:
                self.emit({"resourceType": "Procedure", "id": self._id("proc"), "status": "completed",
                           "code": self.v.concept(self.rng.choice(extra.procedures.codes)), "subject": self._subject(),
                           "performedDateTime": self._when(day)})
            if self.rng.random() < 0.15:
                self.emit({"resourceType": "ServiceRequest", "id": self._id("sr"), "status": "completed",
                           "intent": "order", "code": self.v.concept(self.rng.choice(extra.orders.codes)),
                           "subject": self._subject(), "authoredOn": self._when(day), "requester": self._doctor()})

    def episode(self, scenario: str, span_days: int) -> None:
        rng, v = self.rng, self.v
        onset = self.end - timedelta(days=rng.randint(30, span_days))
        self.condition(rng.choice(v.back_pain), onset)
        self.visit(onset)
        if rng.random() < 0.7:
            self.drug(rng.choice(("nsaid", "nsaid", "analgesic", "muscle-relaxant")), onset)
        modality, contrast = rng.choice((("MRI", False), ("MRI", False), ("MRI", True), ("CT", False),
                                         ("X-ray", False)))
        if scenario == "premature-imaging":
            self.imaging_order(onset + timedelta(days=rng.randint(0, 34)), modality, contrast)
        elif scenario in ("imaging-after-care", "repeat-imaging", "old-episode"):
            self.pt_course(onset + timedelta(days=rng.randint(3, 10)), rng.randint(4, 9))
            day = onset + timedelta(days=rng.randint(45, 120))
            if scenario == "repeat-imaging":
                self.imaging_order(day - timedelta(days=rng.randint(40, 330)), "MRI", False)
            if scenario == "old-episode":
                old = onset - timedelta(days=rng.randint(800, 2500))
                self.condition(rng.choice(v.back_pain), old, resolved=old + timedelta(days=rng.randint(20, 90)))
            self.imaging_order(day, modality, contrast)
        elif scenario == "red-flag":
            category = rng.choice(sorted(v.red_flags))
            flag = rng.choice(v.red_flags[category])
            when = onset - timedelta(days=rng.randint(0, 400))
            if rng.random() < 0.15:  # entered in error: not a red flag at all
                self.condition(flag, when, error=True)
            elif rng.random() < 0.3:  # documented only as the order's reason
                self.imaging_order(onset + timedelta(days=rng.randint(0, 20)), modality, contrast, reason=flag)
                return
            else:
                self.condition(flag, when)
            self.visit(onset, fever=category == "fever")
            self.imaging_order(onset + timedelta(days=rng.randint(0, 20)), modality, contrast)
        elif scenario == "referral":
            if rng.random() < 0.5:
                self.pt_course(onset + timedelta(days=rng.randint(3, 14)), rng.randint(2, 10))
            day = min(onset + timedelta(days=rng.randint(14, 160)), self.end)
            order: dict[str, Any] = {"resourceType": "ServiceRequest", "id": self._id("sr"), "status": "active",
                                     "intent": "order", "subject": self._subject(), "authoredOn": self._when(day),
                                     "requester": self._doctor(),
                                     "encounter": {"reference": f"Encounter/{self.visit(day)}"}}
            if rng.random() < 0.7:
                order["code"] = v.concept(rng.choice(v.referral))
            else:
                order["performerType"] = v.concept(rng.choice(v.specialty))
            self.emit(order)
        elif scenario == "care-only":
            self.pt_course(onset + timedelta(days=rng.randint(3, 20)), rng.randint(1, 8))
            self.drug(rng.choice(v.drugs), onset + timedelta(days=rng.randint(0, 20)))
        elif scenario == "prior-surgery":
            surgery = onset - timedelta(days=rng.randint(200, 2000))
            self.emit({"resourceType": "Procedure", "id": self._id("proc"), "status": "completed",
                       "code": v.concept(rng.choice(v.prior_surgery)), "subject": self._subject(),
                       "performedDateTime": self._when(surgery)})
            self.imaging_order(onset + timedelta(days=rng.randint(0, 30)), "MRI", False)
        elif scenario == "unordered-study":
            self.imaging_order(onset + timedelta(days=rng.randint(0, 60)), modality, contrast, ordered=False)


def pick_scenario(rng: random.Random) -> str:
    return rng.choices(list(SCENARIOS), weights=list(SCENARIOS.values()))[0]


def generate(rules: Rules, patients: int, out: Path, seed: int = 1, end: date = date(2025, 12, 31),
             gz: bool = False, visits_per_year: int = 8, years: int = 3) -> dict[str, int]:
    """Write the population to `out`; resource counts by type. The same arguments give the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = Vocabulary(rules, load_synthetic(rules))
    emit = Writer(out, gz)
    clinics = synth_people.clinics(random.Random(seed))
    for clinic in clinics:
        for res in (clinic.organization, clinic.location, *clinic.practitioners):
            emit(res)
    for i in range(patients):
        rng = random.Random(seed * 1_000_003 + i)
        builder = PatientBuilder(vocab, clinics, end, rng, i, emit)
        builder.background(years, rng.randint(max(visits_per_year // 2, 1), visits_per_year * 3 // 2))
        scenario = pick_scenario(rng)
        if scenario != "no-back-pain":
            builder.episode(scenario, span_days=365 * 2)
    emit.close(f"{end.isoformat()}T23:59:59Z")
    return dict(emit.counts)
