"""The card's wording and its basis page at the edges: what belongs to which card and rules, the record text cut
exactly at its budget, records with a period or no date, several records of one kind, the same record found
twice, history the service could not read, and the suggestions a note does not offer.

Facts are computed here from the case (dates, counts, ids) and the loaded rules; no sentence of cards.yaml is
copied.
"""

from __future__ import annotations

import re
from datetime import timedelta

from cds_hooks.pathway.cards import RULES_EXTENSION, OrderingContext, build_cards
from cds_hooks.pathway.evaluate import evaluate
from cds_hooks.pathway.record import read_draft_orders
from cds_hooks.pathway.wording import record_facts
from tests.chart import (
    CT,
    ICD,
    MRI,
    ORTHO_REFERRAL,
    TODAY,
    ago,
    condition,
    draft,
    lbp,
    med_request,
    procedure,
    pt_sessions,
    record_of,
    rules_for,
    service_request,
    supply,
)
from tests.test_cards import card


def test_the_basis_page_belongs_to_its_card_its_rule_and_its_rules_version() -> None:
    rules = rules_for("seeds")
    for shown, rule_id in ((card(lbp(21)), "imaging-premature"),
                           (card(lbp(400), pt_sessions(120, 60), procedure(MRI[0], 100)), "imaging-duplicate")):
        issued, basis, text = shown.issued, shown.basis, rules.card_text(rule_id)
        assert (issued.rule_id, basis.rule_id, issued.card.source.topic.code) == (rule_id, rule_id, rule_id)
        assert basis.topic == issued.card.source.topic.display == text.topic
        assert (basis.indicator, basis.summary) == (issued.card.indicator, issued.card.summary)
        governance = rules.governance
        assert issued.rules_version == basis.rules_version == governance.version
        assert (basis.rules_status, basis.profile) == (governance.status, rules.profile_id)
        assert [(r.title, r.publisher, r.year, r.url, r.kind) for r in basis.references] == [
            (c.title, c.publisher, c.year, c.url, c.kind) for c in rules.citations_for(rule_id)]
        # A rule's own basis-link label (it names what its page adds), else the cards' common one.
        assert issued.basis_label == (text.basis_link or rules.cards.card.basis_link)
    assert rules.card_text("imaging-premature").basis_link and not rules.card_text("imaging-duplicate").basis_link


def test_the_basis_page_names_every_published_red_flag_list_and_counts_the_curated_ones() -> None:
    published, curated = rules_for("seeds").red_flag_lists
    checked = card(lbp(21)).section("What was checked")
    assert len(published) > 1 and ", ".join(published) in checked
    assert re.search(rf"\b{curated}\b curated", checked)


def test_a_note_without_suggestions_asks_for_no_choice_and_no_override_reason() -> None:
    rules = rules_for("seeds")
    warning = card(lbp(21)).issued.card
    assert warning.suggestions and warning.selectionBehavior == "at-most-one"
    assert [c.code for c in warning.overrideReasons or []] == [c.code for c in rules.cards.override_reasons]
    note = card(lbp(90), pt_sessions(56, 0), order=draft(*ORTHO_REFERRAL)).issued.card
    assert note.source.topic.code == "surgery-window" and not rules.card_text("surgery-window").override_reasons
    assert (note.suggestions, note.selectionBehavior, note.overrideReasons) == (None, None, None)


def test_each_card_carries_its_own_copy_of_the_rules_extension() -> None:
    rules = rules_for("seeds")
    rec = record_of(lbp(21), rules=rules)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": draft(*MRI, oid="o1")},
                                                  {"resource": draft(*CT, oid="o2")}]}
    issued = build_cards(rules, evaluate(rec, read_draft_orders(bundle, rules), rules, TODAY), rec,
                         OrderingContext("p1", "Practitioner/x", None, TODAY))
    first, second = (i.card.extension or {} for i in issued)
    assert first == second and RULES_EXTENSION in first
    first[RULES_EXTENSION]["changed"] = True  # what one card's consumer does to it stays with that card
    assert "changed" not in second[RULES_EXTENSION]


def test_the_pt_referral_offered_leaves_out_a_reason_that_is_not_a_list() -> None:
    shown = card(lbp(21), order=draft(*MRI) | {"reasonCode": {"text": "LBP"}})
    [created] = [a.resource for s in shown.issued.card.suggestions or [] for a in s.actions if a.type == "create"]
    assert created is not None and "reasonCode" not in created  # R4 reasonCode is a list: no invalid copy


def test_an_imaging_order_sent_to_a_surgeon_is_named_as_the_imaging() -> None:
    # It matches the imaging value set by its code and the surgeon value set by its performerType.
    surgeon = {"coding": [{"system": "http://snomed.info/sct", "code": "22731001"}], "text": "Orthopedic surgeon"}
    rules = rules_for("seeds")
    shown = card(lbp(21), order=draft(*MRI, performerType=surgeon))
    imaging_name = rules.cards.order_names["lumbar-imaging-mri-without-contrast"]
    assert shown.summary.startswith(imaging_name) and imaging_name != rules.cards.order_names["surgeon-specialty"]


def test_record_text_at_its_budget_is_whole_and_one_over_is_cut_at_a_word() -> None:
    limit = rules_for("seeds").cards.budgets.record_text_chars

    def fact(label: str) -> str:
        code = {"coding": [{"system": ICD, "code": "M54.50", "display": label}]}
        return card(lbp(21) | {"code": code}).line("Record")

    exact = "b" * limit
    assert fact(exact) == f"{exact} since {ago(21)}"
    # One over: cut one short for the ellipsis; a space left at the cut goes, so the ellipsis follows the word.
    spaced = "a" * (limit - 2) + " " + "b" * 4
    assert fact(spaced) == f"{'a' * (limit - 2)}… since {ago(21)}"


def test_the_card_uses_the_short_modality_names_and_the_basis_page_the_full_ones() -> None:
    rules = rules_for("seeds")
    shown = card(lbp(21))
    short, full = rules.cards.modality_names, rules.pathway.modalities
    missing = shown.line("Not documented").split(", ")
    assert len(missing) > 1 and all(m in short.values() for m in missing), missing
    page = shown.section("Not documented").splitlines()
    assert len(page) == len(missing) and all(m in full.values() for m in page), page
    assert [k for k in full if full[k] in page] == [k for k in short if short[k] in missing]


def test_an_undated_diagnosis_is_shown_as_undated_not_dropped() -> None:
    shown = card(lbp(21), condition("M54.16"))
    facts = shown.line("Record").split("; ")
    assert len(facts) == 2 and ago(21) in facts[0] and "undated" in facts[1] and not re.search(r"\d{4}-", facts[1])
    assert "M54.16" in shown.section("Found in the record")


def test_a_prior_study_over_several_days_gives_both_dates_and_one_day_gives_one() -> None:
    over = card(lbp(400), pt_sessions(120, 60), procedure(MRI[0], 100, end=98)).line("Record")
    assert f"{ago(100)} to {ago(98)}" in over
    one = card(lbp(400), pt_sessions(120, 60), procedure(MRI[0], 100, end=100)).line("Record")
    assert ago(100) in one and " to " not in one


def test_several_prescriptions_give_their_count_and_span_to_the_end_of_the_last_supply() -> None:
    shown = card(lbp(70), med_request("197806", 60, **supply(30)), med_request("197806", 40, **supply(10)))
    line = shown.line("Record")
    last_day = (TODAY - timedelta(days=40) + timedelta(days=10 - 1)).isoformat()  # a 10-day supply counts its first
    assert re.search(rf"\b2\b.*{ago(60)} to {last_day}", line), line


def test_pt_sessions_count_sessions_only_and_end_where_the_last_session_ends() -> None:
    shown = card(lbp(70), procedure("97110", 30), procedure("97110", 20, end=10),
                 service_request("308447003", 40))
    sessions, ordered = [f for f in shown.line("Record").split("; ") if "PT" in f][:2]
    assert re.search(rf"\b2\b.*{ago(30)} to {ago(10)}", sessions), sessions  # the order is no session
    assert ago(40) in ordered and ago(40) not in sessions


def test_a_record_found_twice_is_one_fact_and_the_facts_after_it_stay() -> None:
    rules = rules_for("seeds")
    rec = record_of(lbp(70), condition("M54.16", onset=50), med_request("197806", 40), rules=rules)
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": draft(*MRI)}]}, rules)
    [finding] = evaluate(rec, orders, rules, TODAY)
    found = finding.found
    assert len({e.ref for e in found}) == len(found) >= 3
    assert record_facts(rules, [found[0], *found]) == record_facts(rules, found)


def test_history_not_read_names_an_unlabelled_kind_by_its_key_and_counts_unreadable_records() -> None:
    skipped = [f"Condition/c{i}: invalid onset" for i in (4, 2, 1, 3)]
    shown = card(lbp(21), unavailable={"questionnaireResponses": "timeout"}, skipped=skipped)
    keys, unreadable = shown.line("Not read").split("; ")
    assert keys.lower().endswith("questionnaireresponses") and re.match(r"4\b", unreadable), shown.line("Not read")
    page = shown.section("Not checked")
    assert "questionnaireresponses" in page.lower() and re.search(r"\b4\b", page)
    # The first three by name, whatever order they were met in; the rest counted, not listed.
    assert "; ".join(sorted(skipped)[:3]) in page and "c4" not in page


def test_region_skips_give_the_count_and_the_first_three_records() -> None:
    skips = [procedure("63048", 900, id=f"r{i}") for i in (4, 2, 1, 3)]
    checked = card(lbp(21), *skips).section("What was checked")
    line = next(x for x in checked.splitlines() if "r1" in x)
    assert re.search(r"\b4\b", line) and re.search(r"Procedure/r1\b[^;]*; Procedure/r2\b[^;]*; Procedure/r3\b", line)
    assert "r4" not in line and "None" not in line
