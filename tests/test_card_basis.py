"""What the contrast, repeat-study, fusion, referral and window cards cite from the record, the referral's window
note, and each card's note that care before the episode's gap was left out: facts computed here from the charted
case, read through `says()`."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart import MRI, MRI_CONTRAST, ORTHO_REFERRAL, draft, lbp, procedure, pt_sessions
from tests.test_card_meaning import _seeds, day, mentions_count, mentions_date, only_card, respond, rule_of, says

FUSION = draft("22612") | {"code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22612"}]}}
EARLIER_PT = (1150, 1100)  # PT three years ago: an earlier episode, more than the gap before this one


def _cases(earlier: bool) -> dict[str, dict[str, Any]]:
    old = pt_sessions(*EARLIER_PT) if earlier else []
    return {
        "imaging-contrast": respond(lbp(90), pt_sessions(56, 0), old, order=draft(*MRI_CONTRAST)),
        "imaging-duplicate": respond(lbp(400), pt_sessions(120, 60), procedure(MRI[0], 100), old),
        "surgery-fusion": respond(lbp(200), pt_sessions(150, 60), old, order=FUSION, profile="nice-ng59"),
        "surgery-window": respond(lbp(90), pt_sessions(56, 0), old, order=draft(*ORTHO_REFERRAL)),
        "referral-premature": respond(lbp(60), old, order=draft(*ORTHO_REFERRAL)),
    }


def test_the_contrast_and_fusion_cards_cite_the_diagnosis_and_the_care_found() -> None:
    cases = _cases(earlier=False)
    contrast = only_card(cases["imaging-contrast"])
    assert rule_of(contrast) == "imaging-contrast" and mentions_date(says(contrast), day(90))  # the onset
    fusion = only_card(cases["surgery-fusion"])
    text = says(fusion)
    assert rule_of(fusion) == "surgery-fusion" and mentions_date(text, day(200))
    sessions = range(150, 59, -7)  # pt_sessions(150, 60): weekly from 150 days ago, the last 66 days ago
    assert mentions_count(text, len(sessions), "session")
    assert mentions_date(text, day(sessions[0])) and mentions_date(text, day(sessions[-1]))


def test_the_referral_and_window_cards_cite_the_diagnosis_found() -> None:
    cases = _cases(earlier=False)
    referral, window = only_card(cases["referral-premature"]), only_card(cases["surgery-window"])
    assert rule_of(referral) == "referral-premature" and mentions_date(says(referral), day(60))  # the onsets
    assert rule_of(window) == "surgery-window" and mentions_date(says(window), day(90))


def test_a_premature_referral_also_notes_the_surgical_window() -> None:
    # Two weeks of PT: too short a course (the verdict) and care well inside the window (the note).
    months = _seeds().profile.surgery.window_months
    card = only_card(respond(lbp(90), pt_sessions(20, 0), order=draft(*ORTHO_REFERRAL)))
    assert rule_of(card) == "referral-premature" and re.search(rf"\b{months}\+? months", says(card)), says(card)
    assert not re.search(rf"\b{months}\+? months", says(only_card(_cases(earlier=False)["referral-premature"])))


@pytest.mark.parametrize("rule", ["imaging-contrast", "imaging-duplicate", "surgery-fusion", "surgery-window",
                                  "referral-premature"])
def test_each_card_says_when_care_of_an_earlier_episode_was_left_out(rule: str) -> None:
    gap = rf"\b{_seeds().pathway.episode.gap_days} days\b"
    card = only_card(_cases(earlier=True)[rule])
    assert rule_of(card) == rule and re.search(gap, says(card)), says(card)
    without = only_card(_cases(earlier=False)[rule])
    assert rule_of(without) == rule and not re.search(gap, says(without)), says(without)
