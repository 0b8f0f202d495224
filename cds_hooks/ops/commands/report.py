"""`lumbar-cds report`: the committee report of issued cards and feedback."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cds_hooks.ops.report import FORMATS, build_report, render
from cds_hooks.pathway.rules import load_rules
from cds_hooks.settings.config import Settings
from cds_hooks.store.migrate import check_schema_at, looking_engine


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="per rule: cards issued, accepted, overridden, top override reasons")
    report.add_argument("--since", type=date.fromisoformat, help="only cards issued on or after this day (YYYY-MM-DD)")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--top", type=int, default=3, help="override reasons listed per rule (default 3)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    check_schema_at(settings.store_url)  # a report only reads: it never creates or changes a database
    engine = looking_engine(settings.store_url)
    assert engine is not None  # the schema check found it
    # The clinician's client may send an override reason as a bare code; the rules know its display.
    reasons = load_rules(settings.rules_dir, settings.profile).cards.override_reasons
    displays = {(r.system, r.code): r.display for r in reasons}
    try:
        report = build_report(engine, args.since, args.top, displays)
    finally:
        engine.dispose()
    sys.stdout.write(render(report, args.since, args.format))
    return 0
