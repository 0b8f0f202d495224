"""What each card means, from the response JSON of a real hook call: its verdict and the facts that justify it.

The verdict is the card's indicator, its topic code (the rule), its suggestions, and whether the summary says
something is lacking or already done; the facts are dates, counts, durations and thresholds computed here from
the charted case and the loaded rules. No sentence of rules/cards.yaml is copied: rewording a card keeps these
tests green, reversing its meaning or dropping a fact does not. Everything a card says is read through
`says()`, the one place to change when the card's layout changes (a basis moved to a linked page, say).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import orjson

from cds_hooks.pathway.findings import duration, months_before
from cds_hooks.pathway.rules import Rules
from cds_hooks.service.hook import evaluate_hook
from tests.chart import (
    CT,
    MRI,
    MRI_CONTRAST,
    ORTHO_REFERRAL,
    TODAY,
    condition,
    draft,
    hook_request,
    lbp,
    procedure,
    pt_sessions,
    rules_for,
    service_request,
)

SERVICE = "lumbar-pathway-order-select"
PT_REFERRAL = "308447003"
# A summary that reports something lacking says so with one of these words; one that reports something already
# done (a repeat) has none of them.
LACKING = re.compile(r"\b(not|no|none|without|before|premature|missing|incomplete|under|yet|only)\b", re.I)


def respond(*resources: Any, order: dict[str, Any] | None = None, profile: str = "seeds",
            age: int | None = 45) -> dict[str, Any]:
    """The JSON the service answers for this chart (evaluate_hook is what the HTTP endpoint calls)."""
    rules = rules_for(profile)
    outcome = evaluate_hook(rules, rules.services[SERVICE], hook_request(*resources, order=order, age=age),
                            today=TODAY)
    answer = orjson.loads(orjson.dumps(outcome.response()))
    for card, issued in zip(answer["cards"], outcome.issued, strict=True):
        # The basis page the card links to, as the clinician reads it one click away (test-only key).
        basis = issued.basis
        card["_basis"] = "" if basis is None else "\n".join(
            [basis.headline] + [f"{heading}: {line}" for heading, lines in basis.sections for line in lines])
    return answer


def only_card(answer: dict[str, Any]) -> dict[str, Any]:
    assert len(answer["cards"]) == 1, [c["summary"] for c in answer["cards"]]
    card = answer["cards"][0]
    # A fact the card meant to give, lost on the way, shows up as Python's None in the text.
    assert not re.search(r"\bNone\b", says(card)), says(card)
    return card


def says(card: dict[str, Any]) -> str:
    """Everything the card says, as a clinician can read it (Markdown escapes removed), and its basis page."""
    return re.sub(r"\\(.)", r"\1", f"{card['summary']}\n{card.get('detail', '')}") + "\n" + card.get("_basis", "")


def rule_of(card: dict[str, Any]) -> str:
    return card["source"]["topic"]["code"]


def day(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


def mentions_date(text: str, when: date) -> bool:
    forms = (when.isoformat(), f"{when.day} {when:%b %Y}", f"{when:%b} {when.day}, {when.year}",
             f"{when.day} {when:%B %Y}", f"{when:%B} {when.day}, {when.year}")
    return any(form in text for form in forms)


def mentions_duration(text: str, days: int) -> bool:
    return duration(days) in text or re.search(rf"\b{days} days\b", text) is not None


def mentions_count(text: str, count: int, noun: str) -> bool:
    """`count` stated for `noun` ("4 sessions", "4 documented session(s)", "sessions: 4")."""
    return re.search(rf"\b{count}\b[^.;\n]{{0,30}}{noun}|{noun}\w*\W{{1,3}}{count}\b", text) is not None


def mentions_weeks(text: str, weeks: int) -> bool:
    return re.search(rf"\b{weeks}\b[- ]weeks?\b|\b{weeks * 7} days\b", text) is not None


def says_absent(text: str, *things: str) -> bool:
    """The text says one of `things` is absent: a negation shortly before it ("no conservative care")."""
    return any(re.search(rf"\b(no|not|without|none of)\b[^,;:.]{{0,25}}{re.escape(t)}", text, re.I) for t in things)


def suggestion_actions(card: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Each suggestion as [(action type, resource type or deleted id)]."""
    return [[(a["type"], a.get("resourceId") or a.get("resource", {}).get("resourceType", ""))
             for a in s["actions"]] for s in card.get("suggestions", [])]


def _seeds() -> Rules:
    return rules_for("seeds")


# --------------------------------------------------------------------------- premature imaging


def test_premature_imaging_says_what_is_lacking_and_when_symptoms_began() -> None:
    card = only_card(respond(lbp(21)))
    weeks = _seeds().profile.imaging.min_symptom_weeks
    assert (card["indicator"], rule_of(card)) == ("warning", "imaging-premature")
    assert LACKING.search(card["summary"]), card["summary"]
    text = says(card)
    assert mentions_date(text, day(21)) and mentions_duration(text, 21) and mentions_weeks(text, weeks)
    # The alternative: the draft MRI removed and a PT referral created, or the MRI removed alone.
    assert [("delete", "ServiceRequest/o1"), ("create", "ServiceRequest")] in suggestion_actions(card)
    assert [("delete", "ServiceRequest/o1")] in suggestion_actions(card)


def test_a_trial_begun_too_recently_names_its_first_session_and_how_long_ago() -> None:
    card = only_card(respond(lbp(90), pt_sessions(20, 6)))
    text = says(card)
    assert rule_of(card) == "imaging-premature" and mentions_date(text, day(20)) and mentions_duration(text, 20)
    assert mentions_weeks(text, _seeds().profile.imaging.conservative_trial_weeks)
    # PT is under way: no PT referral is offered in place of the MRI.
    assert all(("create", "ServiceRequest") not in s for s in suggestion_actions(card))


def test_too_few_sessions_gives_the_count_and_the_minimum() -> None:
    card = only_card(respond(lbp(90), procedure("97161", 50), procedure("97110", 8)))
    text = says(card)
    assert rule_of(card) == "imaging-premature"
    assert mentions_count(text, 2, "session") and mentions_count(text, _seeds().profile.formal_pt.min_sessions,
                                                                 "session")
    assert mentions_date(text, day(50)) and mentions_date(text, day(8))


def test_pt_ordered_but_never_attended_gives_the_order_date_and_offers_no_second_referral() -> None:
    card = only_card(respond(lbp(70), service_request(PT_REFERRAL, 30)))
    assert rule_of(card) == "imaging-premature" and mentions_date(says(card), day(30))
    assert suggestion_actions(card) == [[("delete", "ServiceRequest/o1")]]


def test_an_onset_from_the_recorded_date_is_dated_by_it() -> None:
    card = only_card(respond(lbp(onset=None, recorded=10)))
    assert mentions_date(says(card), day(10)) and mentions_duration(says(card), 10)


def test_care_before_the_gap_is_dated_and_the_gap_given() -> None:
    card = only_card(respond(lbp(onset=None, recorded=20), pt_sessions(1150, 1100)))
    text = says(card)
    assert mentions_date(text, day(20)) and re.search(rf"\b{_seeds().pathway.episode.gap_days} days\b", text)


def test_nice_warns_that_imaging_is_not_routine() -> None:
    card = only_card(respond(lbp(14), profile="nice-ng59"))
    assert (card["indicator"], rule_of(card)) == ("warning", "imaging-premature")
    assert LACKING.search(card["summary"]), card["summary"]


# --------------------------------------------------------------------------- repeat imaging and contrast


def test_a_repeat_study_says_it_was_already_done_with_its_date() -> None:
    prior = procedure(MRI[0], 100) | {"code": {"coding": [{"system": MRI[1], "code": MRI[0]}],
                                               "text": "MRI L-spine w/o"}}
    card = only_card(respond(lbp(400), pt_sessions(120, 60), prior))
    assert (card["indicator"], rule_of(card)) == ("warning", "imaging-duplicate")
    assert not LACKING.search(card["summary"]), card["summary"]  # done already, not missing
    text = says(card)
    assert "MRI L-spine w/o" in text and mentions_date(text, day(100)) and mentions_duration(text, 100)
    # Wherever the card states the prior study's date, it says the study was done, not that it was not.
    dated = [c for c in re.split(r"[.;\n]", text) if mentions_date(c, day(100))]
    assert dated and not any(re.search(r"\b(not|no|never)\b", c, re.I) for c in dated), dated
    assert re.search(rf"\b{_seeds().profile.imaging.duplicate_lookback_months} months\b", text)
    assert suggestion_actions(card) == [[("delete", "ServiceRequest/o1")]]


def test_the_latest_of_several_prior_studies_is_the_one_named() -> None:
    card = only_card(respond(lbp(400), pt_sessions(120, 60), procedure(CT[0], 200), procedure(CT[0], 40),
                             order=draft(*CT)))
    text = says(card)
    assert rule_of(card) == "imaging-duplicate" and mentions_duration(text, 40) and not mentions_duration(text, 200)


def test_the_contrast_card_is_advice_with_the_without_contrast_order() -> None:
    card = only_card(respond(lbp(90), pt_sessions(56, 0), order=draft(*MRI_CONTRAST)))
    assert (card["indicator"], rule_of(card)) == ("info", "imaging-contrast")
    [[(kind, rtype)]] = suggestion_actions(card)
    assert (kind, rtype) == ("update", "ServiceRequest")
    updated = card["suggestions"][0]["actions"][0]["resource"]
    assert [c["code"] for c in updated["code"]["coding"]] == [MRI[0]] and updated["id"] == "o1"


def test_a_red_flag_silences_the_card_and_rates_the_order_appropriate() -> None:
    answer = respond(lbp(21), condition("G83.4", onset=2))
    assert answer["cards"] == []
    assert "not-appropriate" not in orjson.dumps(answer["systemActions"]).decode()


# --------------------------------------------------------------------------- surgical referral and surgery


def test_a_referral_without_pt_says_it_is_lacking_and_gives_the_weeks() -> None:
    card = only_card(respond(lbp(60), order=draft(*ORTHO_REFERRAL)))
    assert (card["indicator"], rule_of(card)) == ("warning", "referral-premature")
    assert LACKING.search(card["summary"]), card["summary"]
    assert mentions_weeks(says(card), _seeds().profile.surgery.min_formal_pt_weeks)
    assert [("delete", "ServiceRequest/o1"), ("create", "ServiceRequest")] in suggestion_actions(card)


def test_a_short_pt_course_gives_its_span_sessions_and_dates() -> None:
    # Five sessions: not the minimum of four, so a count copied from the rules cannot pass for the case's own.
    card = only_card(respond(lbp(60), pt_sessions(30, 2), order=draft(*ORTHO_REFERRAL)))
    text = says(card)
    assert rule_of(card) == "referral-premature" and LACKING.search(card["summary"])
    assert mentions_count(text, 5, "session") and mentions_date(text, day(30)) and mentions_date(text, day(2))
    assert mentions_duration(text, 28)


def test_a_long_course_with_too_few_sessions_gives_the_count_and_the_minimum() -> None:
    card = only_card(respond(lbp(70), procedure("97161", 50), procedure("97110", 8), order=draft(*ORTHO_REFERRAL)))
    text = says(card)
    assert rule_of(card) == "referral-premature"
    assert mentions_count(text, 2, "session") and mentions_count(text, _seeds().profile.formal_pt.min_sessions,
                                                                 "session")


def test_a_referral_after_pt_was_only_ordered_dates_the_order() -> None:
    card = only_card(respond(lbp(70), service_request(PT_REFERRAL, 40), order=draft(*ORTHO_REFERRAL)))
    assert rule_of(card) == "referral-premature" and mentions_date(says(card), day(40))
    assert suggestion_actions(card) == [[("delete", "ServiceRequest/o1")]]


def test_payer_referral_without_conservative_care_lists_what_is_expected() -> None:
    rules = rules_for("payer")
    card = only_card(respond(lbp(60), order=draft(*ORTHO_REFERRAL), profile="payer"))
    assert rule_of(card) == "referral-premature" and says_absent(card["summary"], "conservative care")
    expected = [rules.pathway.modalities[m] for m in rules.profile.surgery.expected_modalities]
    assert all(name in says(card) for name in expected), expected


def test_nice_referral_without_a_treatment_package_says_it_is_lacking() -> None:
    card = only_card(respond(lbp(60), order=draft(*ORTHO_REFERRAL), profile="nice-ng59"))
    assert (card["indicator"], rule_of(card)) == ("warning", "referral-premature")
    assert says_absent(card["summary"], "exercise", "treatment package", "non-surgical"), card["summary"]
    # A package done: the same referral passes (the card was about what is lacking, not the referral itself).
    assert respond(lbp(200), pt_sessions(150, 60), order=draft(*ORTHO_REFERRAL), profile="nice-ng59")["cards"] == []


def test_the_surgical_window_note_dates_the_care_and_gives_the_months() -> None:
    months = _seeds().profile.surgery.window_months
    card = only_card(respond(lbp(90), pt_sessions(56, 0), order=draft(*ORTHO_REFERRAL)))
    assert (card["indicator"], rule_of(card)) == ("info", "surgery-window")
    text = says(card)
    assert mentions_date(text, day(56)) and mentions_duration(text, 56) and re.search(rf"\b{months}\+? months", text)
    # Care begun exactly `months` months ago has run the window: no note.
    started = (TODAY - months_before(TODAY, months)).days
    assert respond(lbp(200), pt_sessions(started, 0), order=draft(*ORTHO_REFERRAL))["cards"] == []


def test_nice_warns_on_fusion_whatever_the_care() -> None:
    fusion = draft("22612") | {"code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22612"}],
                                        "text": "Lumbar fusion L4-5"}}
    card = only_card(respond(lbp(200), pt_sessions(150, 60), order=fusion, profile="nice-ng59"))
    assert (card["indicator"], rule_of(card)) == ("warning", "surgery-fusion")
    # The summary names the operation by our own short name; the EHR's wording is on the basis page.
    assert "fusion" in card["summary"].lower() and LACKING.search(card["summary"])
    assert "Lumbar fusion L4-5" not in card["summary"] and "Lumbar fusion L4-5" in says(card)
    assert suggestion_actions(card) == [[("delete", "ServiceRequest/o1")]]


def test_a_red_flag_silences_the_fusion_card_and_the_window_note() -> None:
    fusion = draft("22612") | {"code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22612"}]}}
    fracture = condition("S32.010A", onset=10)
    assert len(respond(lbp(200), pt_sessions(150, 60), order=fusion, profile="nice-ng59")["cards"]) == 1
    assert respond(lbp(200), pt_sessions(150, 60), fracture, order=fusion, profile="nice-ng59")["cards"] == []
    assert len(respond(lbp(90), pt_sessions(56, 0), order=draft(*ORTHO_REFERRAL))["cards"]) == 1
    assert respond(lbp(90), pt_sessions(56, 0), fracture, order=draft(*ORTHO_REFERRAL))["cards"] == []


def test_nice_leaves_a_lumbar_operation_other_than_fusion_alone() -> None:
    laminectomy = draft("63047") | {"code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "63047"}]}}
    assert respond(lbp(200), pt_sessions(150, 60), order=laminectomy, profile="nice-ng59")["cards"] == []


def test_the_pt_referral_offered_carries_the_draft_orders_reason() -> None:
    reason = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}], "text": "LBP"}]
    card = only_card(respond(lbp(21), order=draft(*MRI) | {"reasonCode": reason}))
    [created] = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert created["resourceType"] == "ServiceRequest" and created["reasonCode"] == reason
    assert PT_REFERRAL in {c["code"] for c in created["code"]["coding"]}
    # An empty reasonCode (which the EHR may send) is no reason: FHIR forbids the empty array in the referral.
    card = only_card(respond(lbp(21), order=draft(*MRI) | {"reasonCode": []}))
    [created] = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert "reasonCode" not in created


def test_a_red_flag_silences_the_repeat_study_card() -> None:
    history = (lbp(400), pt_sessions(120, 60), procedure(MRI[0], 100))
    assert rule_of(only_card(respond(*history))) == "imaging-duplicate"
    assert respond(*history, condition("S32.010A", onset=10))["cards"] == []


def test_a_referral_without_a_named_code_is_named_by_its_performer_type() -> None:
    specialist = {"coding": [{"system": "http://snomed.info/sct", "code": "103696004"}]}  # no display, no text
    surgeon = {"coding": [{"system": "http://snomed.info/sct", "code": "22731001"}], "text": "Orthopedic surgeon"}
    order = draft("103696004", "http://snomed.info/sct", performerType=surgeon) | {"code": specialist}
    card = only_card(respond(lbp(60), order=order))
    assert rule_of(card) == "referral-premature" and "referral" in card["summary"].lower()
    assert "Orthopedic surgeon" in says(card)  # the basis page names whom the referral is to
