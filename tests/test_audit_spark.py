"""The Spark engine (local mode, Debian's Java 17) gives the same report as the local engine on the same data."""

from __future__ import annotations

import gzip
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cds_hooks.audit.run import AuditRequest, run_audit
from cds_hooks.audit.synth import generate
from cds_hooks.pathway.rules import Rules
from cds_hooks.settings.config import Settings
from tests.conftest import REPO

PERIOD = (date(2025, 1, 1), date(2025, 12, 31))


def _run(source: Path, out: Path, engine: str) -> dict[str, Any]:
    request = AuditRequest(out=out, source=source, period=PERIOD, progress=False, workers=2, engine=engine,
                           spark_master="local[2]", samples=1, min_cell=1)
    report = run_audit(request, Settings(rules_dir=REPO / "rules"))
    return {k: v for k, v in report.items() if k not in ("engine", "generated")}


def test_spark_and_local_engines_write_the_same_report(rules: Rules, tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.fail("java is not installed: the Spark engine needs Java 17 (./dev test installs "
                    "openjdk-17-jre-headless)")
    source = tmp_path / "export"
    generate(rules, 80, source, seed=5, visits_per_year=2, years=2, gz=True)
    with (source / "Condition.ndjson.gz").open("ab") as handle:  # a second gzip member, a broken line in it
        handle.write(gzip.compress(b'{"subject": {"reference": "Patient/pt-broken"}, not json\n'))
    with (source / "Observation.ndjson.gz").open("ab") as handle:  # broken, of no code asked for: passed over
        handle.write(gzip.compress(b'{"resourceType":"Observation","subject":{"reference":"Patient/pt-x"},\n'))
    with (source / "Procedure.ndjson.gz").open("ab") as handle:  # in another type's file: read by both
        handle.write(gzip.compress(b'{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},'
                                   b'"subject":{"reference":"Patient/pt-x"}}\n'))
    with (source / "Condition.ndjson.gz").open("ab") as handle:  # of a patient by no FHIR id: of no patient
        handle.write(gzip.compress(b'{"resourceType":"Condition","subject":{"reference":"Patient/pt 1"}}\n'))
    local = _run(source, tmp_path / "local", "local")
    spark = _run(source, tmp_path / "spark", "spark")
    assert local["orders"]["total"] > 20 and local["data"]["unreadableLines"] == 1
    assert local["data"]["unattributedLines"] == 1
    assert local["data"]["notAskedFor"]["Observation"] > 100 and local["data"]["resources"]["Observation"] >= 1
    for uuid_free in (local, spark):  # card uuids are random per build
        for cards in uuid_free["samples"].values():
            for sample in cards:
                sample["card"].pop("uuid")
                for suggestion in sample["card"].get("suggestions", []):
                    suggestion.pop("uuid")
    assert spark == local
