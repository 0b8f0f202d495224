"""What the cards say, and what their basis page keeps: the verdict and facts come from the case's data, the
card stays within its budgets, and nothing the long card showed is lost (what was checked and what cannot
be, the onset's source, PT ordered versus done, local pathway policy, the NSAID caveat, honest citations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from cds_hooks.pathway.basis import Basis
from cds_hooks.pathway.cards import IssuedCard, OrderingContext, build_cards
from cds_hooks.pathway.evaluate import evaluate
from cds_hooks.pathway.record import read_draft_orders
from tests.chart import (
    CPT,
    MRI,
    ORTHO_REFERRAL,
    TODAY,
    ago,
    concept,
    condition,
    draft,
    lbp,
    med_request,
    procedure,
    pt_sessions,
    record_of,
    rules_for,
    service_request,
    temperature,
)


@dataclass
class Shown:
    """One card as the clinician sees it, and its basis page's text."""

    issued: IssuedCard

    @property
    def summary(self) -> str:
        return self.issued.card.summary

    @property
    def detail(self) -> str:
        return self.issued.card.detail or ""

    def line(self, label: str) -> str:
        """The detail line with this bold label, without the label ('' when the card has none)."""
        lead = f"- **{label}:** "
        return "\n".join(x[len(lead):] for x in self.detail.splitlines() if x.startswith(lead))

    @property
    def basis(self) -> Basis:
        assert self.issued.basis is not None
        return self.issued.basis

    def section(self, heading: str) -> str:
        return "\n".join(line for h, lines in self.basis.sections if h == heading for line in lines)

    @property
    def page(self) -> str:
        return "\n".join(line for _, lines in self.basis.sections for line in lines)


def card(*resources: Any, order: dict[str, Any] | None = None, profile: str = "seeds", age: int | None = 52,
         unavailable: dict[str, str] | None = None, skipped: list[str] | None = None) -> Shown:
    rules = rules_for(profile)
    rec = record_of(*resources, rules=rules, age=age)
    rec.unavailable.update(unavailable or {})
    rec.skipped.extend(skipped or [])
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": order or draft(*MRI)}]}, rules)
    issued = build_cards(rules, evaluate(rec, orders, rules, TODAY), rec,
                         OrderingContext("p1", "Practitioner/x", None, TODAY))
    assert len(issued) == 1, [i.card.summary for i in issued]
    return Shown(issued[0])


@pytest.mark.parametrize(("onset", "weeks"), [(23, "3 weeks"), (28, "4 weeks"), (13, "1 week"), (5, "5 days")])
def test_the_verdict_comes_from_the_case(onset: int, weeks: str) -> None:
    shown = card(lbp(onset))
    # The verdict first, our own short order name (the draft's display is "draft order"), then the reasons.
    assert shown.summary == f"Lumbar MRI likely premature: {weeks} of symptoms, no formal PT, no red flag"
    why = shown.line("Why").splitlines()
    assert why[0].startswith(f"{weeks} of symptoms") and "6 weeks" in why[0]
    assert shown.line("Record") == f"x since {ago(onset)}"


def test_the_order_name_is_ours_whatever_the_ehr_calls_it() -> None:
    order = draft(*MRI) | {"code": concept(CPT, "72148", "Magnetic resonance (eg, proton) imaging, spinal canal and "
                                                         "contents, lumbar; without contrast material")}
    shown = card(lbp(21), order=order)
    assert shown.summary.startswith("Lumbar MRI likely premature:")
    assert "Magnetic resonance" not in shown.summary + shown.detail
    assert "Magnetic resonance (eg, proton) imaging" in shown.section("The draft order")  # the basis names it
    referral = card(lbp(60), order=draft(*ORTHO_REFERRAL))
    assert referral.summary.startswith("Spine-surgery referral likely premature: no formal PT")


def test_facts_are_the_records_with_their_dates_at_most_five_then_counted() -> None:
    history = [lbp(300), condition("M54.16", onset=200), condition("M51.26", onset=150),
               condition("M48.061", onset=120), med_request("197806", 40),
               condition("M54.41", onset=100), condition("M54.42", onset=90)]
    shown = card(*history)
    facts = shown.line("Record").split("; ")
    assert len(facts) == 6 and facts[-1] == "and 2 more"
    assert facts[0] == f"x since {ago(300)}"
    # Every fact is on the basis page, each with its code.
    found = shown.section("Found in the record")
    for code in ("M54.50", "M54.16", "M51.26", "M48.061", "M54.41", "M54.42", "197806"):
        assert code in found
    assert "M54.41" not in shown.detail


def test_record_text_is_cut_and_escaped_on_the_card_and_whole_on_the_basis_page() -> None:
    label = "<b>LBP</b> [x](http://e.io) after a fall at work in the warehouse"
    shown = card(lbp(21) | {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50",
                                                 "display": label}]}})
    fact = shown.line("Record")
    assert fact.startswith("\\<b\\>LBP\\</b\\> \\[x\\](http\\://e.io) aft… since")
    assert "](http://" not in shown.detail and "<b>" not in shown.detail
    assert label in shown.section("Found in the record")  # the page escapes it for HTML when it renders


def test_the_basis_says_exactly_what_was_checked_and_what_cannot_be() -> None:
    shown = card(lbp(21), lbp(400, clinical="resolved"), med_request("197806", 20), temperature(37.2, 2))
    checked = shown.section("What was checked")
    assert ("Red flags were looked for in 2 coded condition(s), 1 medication record(s), "
            "1 body-temperature reading(s) and the patient's age (52 years); none was found.") in checked
    assert "Not checkable from coded data" in checked and "examination" in checked
    assert "date of birth not available" in card(lbp(21), age=None).section("What was checked")
    # The card says no red flag, and its first link says where the checks are.
    assert shown.summary.endswith("no red flag")
    assert "what was checked" in (shown.issued.basis_label or "")


def test_history_not_read_is_on_the_card_and_why_on_the_basis_page() -> None:
    shown = card(lbp(21), unavailable={"medicationRequests": "timeout", "vitalSigns": "timeout",
                                       "procedures": "refused", "imagingStudies": "truncated"})
    assert shown.line("Not read") == "imaging studies, prescriptions, procedures, and 1 more"
    not_checked = shown.section("Not checked")
    assert "Prescriptions, vital signs (body temperature): not checked; the EHR's FHIR server did not answer" in (
        not_checked)
    assert "only partly checked" in not_checked


def test_the_onset_source_is_named() -> None:
    onset = card(lbp(21))
    assert "(3 weeks ago; from the onset date on the diagnosis)" in onset.section("Why")
    recorded = card(lbp(onset=None, recorded=10))
    assert recorded.line("Why").startswith("1 week since the diagnosis was recorded;")
    assert "from the date the diagnosis was first recorded; no onset date was given" in recorded.section("Why")
    assert "first recorded 2026-11-11, no onset date given" in recorded.section("Found in the record")
    assert f"(recorded {ago(10)})" in recorded.line("Record")


def test_pt_ordered_is_not_pt_done() -> None:
    ordered = card(lbp(70), service_request("308447003", 30))
    assert ordered.line("Why") == f"PT ordered {ago(30)}, no session since: PT ordered, not PT done"
    assert ordered.summary == "Lumbar MRI likely premature: PT ordered, not done, no red flag"
    assert f"ordered {ago(30)}" in ordered.section("Found in the record")
    done = card(lbp(70), pt_sessions(30, 9))
    assert done.line("Record").endswith(f"formal PT: 4 session(s), {ago(30)} to {ago(9)}")
    assert f"Formal physical therapy: 4 session(s) on different days, {ago(30)} to {ago(9)}" in done.page


def test_the_referral_card_calls_the_six_weeks_local_policy_and_cites_no_secondary_summary() -> None:
    shown = card(lbp(60), order=draft(*ORTHO_REFERRAL))
    assert shown.line("Local pathway policy") == "completed formal PT before a surgical referral"
    policy = shown.section("Local pathway policy")
    assert "No primary guideline found sets it" in policy and "seed pathway" in policy
    assert "droracle" not in shown.detail + shown.page + str(shown.issued.card.links)
    assert all(r.kind != "secondary" and "nass" not in r.url for r in shown.basis.references)


def test_payer_and_nice_cards_carry_no_local_policy_line() -> None:
    for shown in (card(lbp(60), order=draft(*ORTHO_REFERRAL), profile="payer"), card(lbp(60), profile="nice-ng59")):
        assert shown.line("Local pathway policy") == ""
        assert shown.section("Local pathway policy") == ""


@pytest.mark.parametrize("profile", ["seeds", "payer", "nice-ng59"])
def test_nsaid_advice_carries_its_contraindication_caveat(profile: str) -> None:
    rules = rules_for(profile)
    advising = [r for r in rules.cards.rules if "NSAID" in rules.card_text(r).recommendation]
    assert advising, profile
    for rule_id in advising:
        text = rules.card_text(rule_id)
        assert "contraindicated" in text.recommendation, (profile, rule_id)
        # The card's one sentence keeps the caveat, and its basis link names the cautions the page lists.
        assert "unless contraindicated" in text.advice, (profile, rule_id)
        assert "NSAID cautions" in (text.basis_link or ""), (profile, rule_id)
    shown = card(lbp(21), profile=profile)
    assert "unless contraindicated" in shown.line("Advice")
    caveat = shown.section("Recommendation")
    assert "unless contraindicated" in caveat and ("kidney disease" in caveat or "cardio-renal risk" in caveat)


def test_no_profile_cites_a_secondary_source_on_a_card() -> None:
    for profile in ("seeds", "payer", "nice-ng59"):
        rules = rules_for(profile)
        for rule_id in rules.profile.citations:
            assert all(c.kind != "secondary" for c in rules.citations_for(rule_id)), (profile, rule_id)


def test_references_are_links_on_the_card_never_in_the_detail_and_all_on_the_basis_page() -> None:
    rules = rules_for("seeds")
    shown = card(lbp(21))
    cited = rules.citations_for("imaging-premature")
    links = shown.issued.card.links or []
    assert [link.label for link in links] == [c.short_title for c in cited[: rules.cards.budgets.card_citations]]
    assert all(len(link.label) <= rules.cards.budgets.link_label_chars for link in links)
    assert "http" not in shown.detail and "](" not in shown.detail
    assert [r.url for r in shown.basis.references] == [c.url for c in cited]


def test_the_worst_case_card_is_at_its_line_budget() -> None:
    """Every reason the seeds can give at once (short symptoms, PT too short, a repeat study), what is missing,
    history not read, advice and policy: the eight lines the budget allows, and no more."""
    prior = procedure("72148", 100)
    shown = card(lbp(30), pt_sessions(14, 0), prior, unavailable={"vitalSigns": "timeout"})
    rules = rules_for("seeds")
    labels = [line.split(":**")[0].removeprefix("- **") for line in shown.detail.splitlines()]
    assert labels == ["Why", "Why", "Why", "Record", "Not documented", "Not read", "Advice", "Local pathway policy"]
    assert len(labels) == rules.cards.budgets.detail_lines
    assert all(len(line.replace("**", "").removeprefix("- ")) <= rules.cards.budgets.line_chars
               for line in shown.detail.splitlines() if not line.startswith("- **Record"))
    assert len(shown.summary) <= rules.cards.budgets.summary_chars


def test_earlier_episode_care_is_explained() -> None:
    shown = card(lbp(onset=1200, recorded=20), pt_sessions(1150, 1100))
    assert "belongs to an earlier back-pain episode (a gap of 180 days or more" in shown.section("What was checked")
    assert "formal PT:" not in shown.line("Record")  # the earlier episode's PT is not a fact of this one


def test_region_skips_are_reported() -> None:
    shown = card(lbp(21), procedure("63048", 900))
    assert ("1 imaging or surgery record(s) coded without a region and with no lumbar body site"
            " were not counted as lumbar") in shown.section("What was checked")


def test_region_skips_read_the_same_whatever_order_the_server_returns_them() -> None:
    # The FHIR fallback fetches resource types in parallel, so history arrives in any order.
    cervical = {"bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "122494005"}]}]}
    first, second = procedure("63048", 900), condition("M96.1", onset=800, **cervical)
    one, other = card(lbp(21), first, second), card(lbp(21), second, first)
    assert (one.detail, one.page) == (other.detail, other.page)


def test_records_on_the_same_day_read_the_same_whatever_their_order() -> None:
    # Two prior lumbar MRIs recorded on one day (with and without contrast): the repeat card names one.
    plain = procedure("72148", 100) | {"code": concept(CPT, "72148", "MRI lumbar spine without contrast")}
    both = procedure("72158", 100) | {"code": concept(CPT, "72158", "MRI lumbar spine without and with contrast")}
    history = [lbp(400), *pt_sessions(300, 250), plain, both]
    one, other = card(*history), card(*reversed(history))
    assert (one.detail, one.page) == (other.detail, other.page)
