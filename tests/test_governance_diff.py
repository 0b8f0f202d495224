"""`lumbar-cds rules diff`: what changed between two rules directories (or a git commit and now), told to
the committee: exactly the changes made, each once, with displays for codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cds_hooks.governance.diff import Change, diff_rules
from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import load_rules
from tests.conftest import REPO
from tests.test_rules import _replace

THRESHOLD = ("      min_symptom_weeks: 6 ", "      min_symptom_weeks: 8 ")
DISPLAY = ('code: "M54.51", display: "Vertebrogenic low back pain"}',
           'code: "M54.51", display: "Vertebrogenic low back pain, lumbar"}')


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "new" / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def _diff(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["rules", "diff", *args]) == 0
    return capsys.readouterr().out


def test_one_threshold_and_one_code_changed_are_exactly_the_two_changes(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _replace(copy / "pathway.yaml", *THRESHOLD)
    _replace(copy / "valuesets" / "diagnoses.yaml", *DISPLAY)
    changes = diff_rules(load_rules(REPO / "rules"), load_rules(copy))
    # payer extends seeds without setting this threshold, so the one edit changes both profiles.
    assert changes == [
        Change("profiles", "seeds, payer", "imaging.min_symptom_weeks", "changed", 6, 8),
        Change("valuesets", "lbp-population", "code ICD-10-CM M54.51 display", "changed",
               "Vertebrogenic low back pain", "Vertebrogenic low back pain, lumbar"),
    ]
    text = _diff(capsys, str(REPO / "rules"), str(copy))
    assert "2 changes" in text
    assert "~ seeds, payer · imaging.min_symptom_weeks: 6 → 8" in text
    assert "the rules changed but their version did not" in text
    markdown = _diff(capsys, str(REPO / "rules"), str(copy), "--format", "markdown")
    assert "### Profile settings" in markdown and "### Value sets" in markdown
    assert "- ~ **seeds, payer** · `imaging.min_symptom_weeks`: 6 → 8" in markdown


def test_identical_rules_have_no_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert "No changes" in _diff(capsys, str(REPO / "rules"), str(REPO / "rules"))


def test_codes_added_and_removed_are_listed_with_their_displays(copy: Path) -> None:
    _replace(copy / "valuesets" / "diagnoses.yaml",
             '      - {system: "http://hl7.org/fhir/sid/icd-10-cm", code: "M54.59", display: "Other low back pain"}\n',
             '      - {system: "http://hl7.org/fhir/sid/icd-10-cm", code: "M54.89", display: "Other dorsalgia"}\n')
    changes = diff_rules(load_rules(REPO / "rules"), load_rules(copy))
    assert changes == [
        Change("valuesets", "lbp-population", "code", "removed", old="ICD-10-CM M54.59 Other low back pain"),
        Change("valuesets", "lbp-population", "code", "added", new="ICD-10-CM M54.89 Other dorsalgia"),
    ]


def test_wording_citations_switches_and_governance_are_reported_where_they_belong(copy: Path) -> None:
    _replace(copy / "cards.yaml", "headline: Repeat lumbar imaging without a new indication.",
             "headline: Repeat lumbar imaging without a new finding.")
    _replace(copy / "citations.yaml", "    year: 2011\n    url: https://www.acpjournals.org/doi/10.7326/0003-4819-154",
             "    year: 2012\n    url: https://www.acpjournals.org/doi/10.7326/0003-4819-154")
    _replace(copy / "pathway.yaml", "    imaging:\n      formal_pt_required: false",
             "    imaging:\n      suggest_mri_without_contrast: false\n      formal_pt_required: false")
    _replace(copy / "governance.yaml", "\nversion: 1.1.0", "\nversion: 1.2.0")
    changes = diff_rules(load_rules(REPO / "rules"), load_rules(copy))
    assert [(c.area, c.subject, c.path, c.old, c.new) for c in changes] == [
        ("governance", "", "version", "1.1.0", "1.2.0"),
        ("profiles", "payer", "imaging.suggest_mri_without_contrast", True, False),
        ("cards", "", "rules.imaging-duplicate.headline", "Repeat lumbar imaging without a new indication.",
         "Repeat lumbar imaging without a new finding."),
        ("citations", "acp-2011-high-value", "year", 2011, 2012),
    ]


def test_diff_against_a_git_commit(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy.parent
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "rules"], check=True)
    subprocess.run([*git, "commit", "-qm", "rules 1.1.0"], check=True)
    _replace(copy / "pathway.yaml", *THRESHOLD)
    text = _diff(capsys, "--git", "HEAD", str(copy))
    assert "1 change;" in text and "~ seeds, payer · imaging.min_symptom_weeks: 6 → 8" in text
    capsys.readouterr()
    assert main(["rules", "diff", "--git", "no-such-ref", str(copy)]) == 2
    assert "no-such-ref" in capsys.readouterr().err
    assert main(["rules", "diff", "--git=--output=/tmp/x", str(copy)]) == 2  # never an option of git


def test_a_published_sets_decision_and_exclusions_are_reported(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """decisions.yaml is part of the rules: a decision reworded and an exclusion dropped are two changes,
    named by value set and by the excluded code."""
    decisions = copy / "valuesets" / "published" / "decisions.yaml"
    _replace(decisions, "asymptomatic HIV and HIV in pregnancy, in ICD-10-CM and SNOMED CT.",
             "asymptomatic HIV and HIV in pregnancy.")
    _replace(decisions, '      - {system: "http://snomed.info/sct", code: "175899003", display: "Autotransplantation '
             'of kidney (procedure)", reason: *autograft, source: *descriptor}\n', "")
    changes = diff_rules(load_rules(REPO / "rules"), load_rules(copy))
    assert [(c.area, c.subject, c.path, c.kind) for c in changes] == [
        ("valuesets", "vsac-hiv", "decision", "changed"),
        ("valuesets", "vsac-kidney-transplant", "exclusion", "removed"),
    ]
    assert changes[1].old == "SNOMED CT 175899003 Autotransplantation of kidney (procedure)"
    text = _diff(capsys, str(REPO / "rules"), str(copy))
    assert "2 changes;" in text and "175899003 Autotransplantation of kidney" in text
