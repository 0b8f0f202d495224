"""Published value sets: imported whole by a reproducible command, their decisions and exclusions checked,
and `rules check` reporting each set's provenance and size."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import RulesError, load_rules

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = REPO / "rules" / "valuesets" / "published"


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def _pack(published_file: Path) -> dict[str, Any]:
    """The reference-pack form of an imported set: what `import-valueset` reads."""
    doc = orjson.loads(published_file.read_bytes())
    p = doc["published"]
    return {
        "oid": p["oid"], "url": p.get("url"), "name": p["name"], "version": p["version"],
        "publisher": p.get("publisher"), "expansion": {"identifier": p.get("expansion"),
                                                       "timestamp": p.get("expansion_timestamp")},
        "code_system_versions": p.get("code_system_versions", {}),
        "source": {"repo": p["repository"], "path": p["path"], "commit": p["commit"]},
        "category": p.get("pack_category"), "role": p.get("role"), "note": p.get("note"),
        "code_count": p["code_count"],
        "codes": [{"system": s, "code": c, "display": d} for s, c, d in doc["codes"]],
    }


def _problems(rules_dir: Path) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules(rules_dir)
    return info.value.problems


@pytest.mark.parametrize("name", ["vsac-neurologic-impairment", "vsac-hiv", "vsac-major-transplant"])
def test_the_import_command_reproduces_the_committed_file(name: str, rules_copy: Path, tmp_path: Path) -> None:
    committed = PUBLISHED / f"{name}.json"
    doc = orjson.loads(committed.read_bytes())
    pack = tmp_path / "pack.json"
    pack.write_bytes(orjson.dumps(_pack(committed)))
    (rules_copy / "valuesets" / "published" / f"{name}.json").unlink()
    argv = ["rules", "import-valueset", str(pack), "--id", name, "--kind", doc["kind"],
            "--category", doc["category"], "--title", doc["title"], "--rules-dir", str(rules_copy)]
    assert main(argv) == 0
    assert (rules_copy / "valuesets" / "published" / f"{name}.json").read_bytes() == committed.read_bytes()


def test_an_expansion_that_is_not_whole_is_refused(tmp_path: Path, rules_copy: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack(PUBLISHED / "vsac-hiv.json")
    pack["codes"] = pack["codes"][1:]  # one code lost on the way
    source = tmp_path / "hiv.json"
    source.write_bytes(orjson.dumps(pack))
    argv = ["rules", "import-valueset", str(source), "--id", "vsac-hiv-2", "--kind", "red-flag", "--category", "hiv",
            "--rules-dir", str(rules_copy)]
    assert main(argv) == 1
    assert "not whole" in capsys.readouterr().err
    assert not (rules_copy / "valuesets" / "published" / "vsac-hiv-2.json").exists()


def test_an_imported_set_needs_a_recorded_decision(tmp_path: Path, rules_copy: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "hiv.json"
    source.write_bytes(orjson.dumps(_pack(PUBLISHED / "vsac-hiv.json")))
    argv = ["rules", "import-valueset", str(source), "--id", "vsac-hiv-copy", "--kind", "red-flag",
            "--category", "hiv", "--rules-dir", str(rules_copy)]
    assert main(argv) == 1
    assert "no decision for the imported set 'vsac-hiv-copy'" in capsys.readouterr().err


def test_a_code_missing_from_a_published_file_is_reported(rules_copy: Path) -> None:
    path = rules_copy / "valuesets" / "published" / "vsac-hiv.json"
    lines = path.read_text().splitlines(keepends=True)
    first_code = next(i for i, line in enumerate(lines) if line.lstrip().startswith('["'))
    del lines[first_code]
    path.write_text("".join(lines))
    assert any("vsac-hiv.json" in p and "not imported whole" in p for p in _problems(rules_copy))


def test_an_exclusion_must_name_a_code_of_the_set(rules_copy: Path) -> None:
    path = rules_copy / "valuesets" / "published" / "decisions.yaml"
    text = path.read_text()
    path.write_text(text.replace('code: "Z68.1"', 'code: "Z68.9"', 1))
    assert any(p.startswith("rules/valuesets/published/decisions.yaml:") and "Z68.9 is not in the published set"
               in p for p in _problems(rules_copy))


def test_lifting_an_exclusion_surfaces_the_contradiction_it_prevents(rules_copy: Path) -> None:
    # M48.062 is ordinary stenosis (the population) and a member of VSAC Neurologic impairment.
    path = rules_copy / "valuesets" / "published" / "decisions.yaml"
    lines = [line for line in path.read_text().splitlines(keepends=True) if 'code: "M48.062"' not in line
             or "reason: &ordinary" in line]
    text = "".join(lines).replace('code: "M48.062", display: "Spinal stenosis, lumbar region with neurogenic '
                                  'claudication", reason: &ordinary',
                                  'code: "R29.2", display: "Abnormal reflex", reason: &ordinary')
    path.write_text(text)
    problems = _problems(rules_copy)
    assert any("M48.062" in p and "contradicting" in p for p in problems), problems


@pytest.mark.parametrize(("file", "old", "new", "expected"), [
    ("pathway.yaml", "referral-premature: [acp-2017]\n      surgery-window",
     "referral-premature: [seed-spondylosis]\n      surgery-window", "secondary summary, never a card reference"),
    ("pathway.yaml", "imaging-contrast, referral-premature, surgery-window, surgery-fusion]",
     "referral-premature, surgery-window, surgery-fusion]", "red flags must silence imaging-contrast"),
    ("services.yaml", "http://loinc.org|8333-7&", "", "differ from the vital-sign value set codes"),
    ("cards.yaml", '  region_skipped: "{count}', '  region_skipped: "{counted}', "basis.region_skipped"),
    ("cards.yaml", "    recorded: \"date the diagnosis", "    recordd: \"date the diagnosis", "onset_sources"),
])
def test_safety_invariants_are_checked(rules_copy: Path, file: str, old: str, new: str, expected: str) -> None:
    path = rules_copy / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    assert any(expected in p for p in _problems(rules_copy)), expected


def test_rules_check_reports_each_value_set_with_its_provenance_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", "--rules-dir", str(REPO / "rules")]) == 0
    out = capsys.readouterr().out
    assert "vsac-cancer [red-flag/cancer] 7981 codes (ICD-10-CM 1293, SNOMED CT 6688;" in out
    assert "VSAC Cancer 2.16.840.1.113883.3.526.3.1010 version 20200306" in out
    assert "cqframework/ecqm-content-qicore-2024@9ebd48ffebf2" in out
    assert "red-flag-spinal-infection [red-flag/spinal-infection]" in out and "curated, a source per code" in out
    assert "not used: Substance Use Disorder 2.16.840.1.113883.3.464.1003.106.12.1001" in out
