"""rules/: the shipped rules load, and mistakes are reported with file and line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import Rules, RulesError, load_rules

REPO = Path(__file__).resolve().parent.parent


def test_shipped_rules_load_for_every_profile(rules: Rules) -> None:
    for profile in rules.pathway.profiles:
        loaded = load_rules(REPO / "rules", profile)
        assert loaded.profile_id == profile
    assert rules.profile_id == "seeds"


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def _replace(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def _problems(rules_dir: Path) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules(rules_dir)
    return info.value.problems


def test_unknown_code_system_is_reported_with_line(rules_copy: Path) -> None:
    path = rules_copy / "valuesets" / "red_flags.yaml"
    line = _replace(path, "http://hl7.org/fhir/sid/icd-10-cm", "http://example.org/icd10")
    problems = _problems(rules_copy)
    assert any(f"red_flags.yaml:{line}" in p and "unknown code system" in p for p in problems), problems


def test_contradicting_duplicate_code_is_reported(rules_copy: Path, rules: Rules) -> None:
    red_flag = rules.valuesets["red-flag-cauda-equina"].codes[0]
    path = rules_copy / "valuesets" / "diagnoses.yaml"
    text = path.read_text()
    anchor = "    codes:\n"
    path.write_text(text.replace(anchor, anchor + (
        f'      - {{system: "{red_flag.system}", code: "{red_flag.code}", display: "dup"}}\n'), 1))
    problems = _problems(rules_copy)
    assert any(red_flag.code in p and "contradicting" in p and "diagnoses.yaml:" in p for p in problems), problems


@pytest.mark.parametrize(
    ("file", "old", "new", "expected", "exact"),
    [
        ("pathway.yaml", "imaging-contrast: [acr-lbp-2021]", "imaging-contrast: []",
         "imaging-contrast has no citation", True),
        ("pathway.yaml", "imaging-duplicate: [acp-2011-high-value]", "imaging-duplicate: [nope]",
         "'nope' is not in citations.yaml", True),
        ("pathway.yaml", "min_symptom_weeks: 6 ", "min_symptom_weeks: six ", "min_symptom_weeks", True),
        ("cards.yaml", 'summary: "{order} likely a repeat', 'summary: "{order} {patient_name} likely a repeat',
         "unknown fields ['patient_name']", True),
        # The budgets: every template with its fields at their longest.
        ("cards.yaml", 'summary: "{order} likely a repeat: {reasons}"', 'summary: "{order} likely a repeat: {reasons}'
         + "!" * 27 + '"', "the summary can reach 101 characters; budgets.summary_chars is 100", True),
        ("cards.yaml", '        brief: "same kind of study on {date}"', '        brief: "same kind of study on {date}'
         + "!" * 38 + '"', "budgets.summary_chars is 100", False),
        ("cards.yaml", 'line: "Same kind of study on {date}; no new indication is coded"',
         'line: "Same kind of study on {date}; no new indication is coded, nor any change in clinical status!"',
         "imaging-duplicate (profile seeds): reason prior_imaging can reach 101 characters; budgets.line_chars", True),
        ("cards.yaml", "  detail_lines: 8 ", "  detail_lines: 7 ",
         "imaging-premature (profile seeds): the detail can reach 8 lines; budgets.detail_lines is 7", False),
        ("cards.yaml", "    local_policy: formal PT is required before imaging\n", "",
         "local_policy (the card's line) and local_policy_detail (the basis page) go together", False),
        ("cards.yaml", '    condition: "{label} since {date}"', '    condition: "{label} since {date} (onset on the '
         'diagnosis, as coded)"', "card.facts.condition can reach 84 characters", True),
        ("cards.yaml", "  lumbar-imaging-ct: Lumbar CT\n", "",
         "order_names: value set 'lumbar-imaging-ct' (lumbar-imaging) has no short name", False),
        ("citations.yaml", 'short_title: "ACR Appropriateness Criteria: Low Back Pain (2021)"',
         'short_title: "ACR Appropriateness Criteria: Low Back Pain (2021 revision, 1-7)"',
         "citation acr-lbp-2021: short_title has 64 characters; link labels take 60", True),
        ("services.yaml", "Procedure?patient={{context.patientId}}", "Procedure?patient={{context.draftOrders}}",
         "not a CDS Hooks 2.0 token", False),
        ("cards.yaml", 'code: "308447003"', 'code: 308447003', "pt_referral is not a valid R4 ServiceRequest", False),
        ("cards.yaml", '  timeout: "{keys}: not checked;', '  timeout: "{key}: not checked;',
         "unavailable.timeout: use exactly the field {keys}", True),
        ("cards.yaml", '  refused: "{keys}: not checked; the EHR\'s FHIR server refused access."\n', "",
         "unavailable: reason 'refused' has no line", False),
        ("citations.yaml", "year: 2021\n", "year: 2021\n  broken: [unclosed\n", "YAML error", False),
        # A sandbox draft order whose code is a PT code, not an order the pathway judges.
        ("sandbox.yaml", 'label: CT lumbar spine, system: "http://www.ama-assn.org/go/cpt", code: "72131"',
         'label: CT lumbar spine, system: "http://www.ama-assn.org/go/cpt", code: "97110"',
         "orders.ct: code http://www.ama-assn.org/go/cpt|97110 is in no value set of kind", True),
        ("sandbox.yaml", 'code: "308482002"', 'code: "0000000"', "orders.neurosurgery-referral: code", True),
        ("sandbox.yaml", 'pt_session: {system: "http://www.ama-assn.org/go/cpt", code: "97110"}',
         'pt_session: {system: "http://www.ama-assn.org/go/cpt", code: "72148"}',
         "pt_session: code http://www.ama-assn.org/go/cpt|72148 is in no conservative-care value set", True),
        ("sandbox.yaml", "  referral: Referral\n", "", "timeline_lanes: lane 'referral' has no label", False),
    ],
)
def test_rule_mistakes_are_reported_with_file_and_line(
    rules_copy: Path, file: str, old: str, new: str, expected: str, exact: bool
) -> None:
    line = _replace(rules_copy / file, old, new)
    problems = _problems(rules_copy)
    hits = [p for p in problems if expected in p]
    assert hits, problems
    assert any(p.startswith(f"rules/{file}:") for p in hits), hits
    if exact:  # the problem points at the very line that was edited
        assert any(p.startswith(f"rules/{file}:{line}:") for p in hits), hits


def test_the_line_budget_follows_what_a_profile_can_find(rules_copy: Path) -> None:
    """A profile setting that adds a possible reason adds a line: the seeds' premature-imaging card is at its
    budget (three reasons), so a fourth is refused where the card's wording is."""
    _replace(rules_copy / "pathway.yaml", "warn_without_red_flags: false", "warn_without_red_flags: true")
    problems = _problems(rules_copy)
    assert any(p.startswith("rules/cards.yaml:") and "imaging-premature (profile seeds): the detail can reach 9 lines"
               in p for p in problems), problems


def test_the_formal_pt_modality_the_pathway_relies_on_must_exist(rules_copy: Path) -> None:
    _replace(rules_copy / "valuesets" / "conservative_care.yaml", "category: formal-pt", "category: nsaid")
    assert any(p.startswith("rules/pathway.yaml:") and "'formal-pt': no conservative-care value set" in p
               for p in _problems(rules_copy))
    _replace(rules_copy / "pathway.yaml", "  formal-pt: Formal physical therapy\n", "")
    assert any("modalities must define 'formal-pt'" in p for p in _problems(rules_copy))


def test_rules_check_command(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", "--rules-dir", str(REPO / "rules")]) == 0
    assert "rules OK" in capsys.readouterr().out
    _replace(rules_copy / "pathway.yaml", "window_months: 3 ", "window_months: -3 ")
    assert main(["rules", "check", "--rules-dir", str(rules_copy)]) == 1
    err = capsys.readouterr().err
    assert "rules check FAILED" in err and "pathway.yaml:" in err and "window_months" in err


def test_rules_load_from_an_installed_wheel(tmp_path: Path) -> None:
    """The wheel carries rules/ inside the package; a plain install finds them, and the
    sandbox page's template, scripts and scenario fixtures."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True, capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "cds_hooks/builtin_rules/pathway.yaml" in names
        assert "cds_hooks/store/migrations/versions/0001_initial.py" in names
        assert {"cds_hooks/sandbox/templates/sandbox.html", "cds_hooks/sandbox/static/sandbox.js",
                "cds_hooks/sandbox/static/markdown.js",
                "cds_hooks/builtin_fixtures/premature-mri-3-weeks.json"} <= set(names)
        archive.extractall(site)
    code = (
        "import cds_hooks.pathway.rules.load as r; rules = r.load_rules(); "
        "print(rules.source_dir); assert 'builtin_rules' in str(rules.source_dir); "
        # The migrations ship too: the installed package can create its schema.
        "from cds_hooks.store.migrate import upgrade, current_revision; from cds_hooks.store.repository import Store; "
        "engine = Store('sqlite:///wheel.sqlite3').engine; upgrade(engine); assert current_revision(engine); "
        "from pathlib import Path; from cds_hooks.app import create_app; "
        f"c = create_app(data_dir=Path({str(tmp_path / 'data')!r}), sandbox=True, auto_migrate=True).test_client(); "
        "assert c.get('/sandbox').status_code == 200 and c.get('/sandbox/static/sandbox.js').status_code == 200; "
        "assert len(c.get('/sandbox/api/scenarios').json['scenarios']) > 20"
    )
    # -I isolates from the editable install; the extracted wheel is the only cds_hooks.
    deps = [p for p in sys.path if "site-packages" in p]
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {[str(site), *deps]!r}; {code}"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stdout
