"""`lumbar-cds report`: the committee report of issued cards and feedback."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cds_hooks.ops.commands.db import service_engine
from cds_hooks.ops.report import FORMATS, build_report, render
from cds_hooks.pathway.rules import load_rules
from cds_hooks.settings.config import Settings
from cds_hooks.store.migrate import check_schema


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="per rule: cards issued, accepted, overridden, top override reasons")
    report.add_argument("--since", type=date.fromisoformat, help="only cards issued on or after this day (YYYY-MM-DD)")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--top", type=int, default=3, help="override reasons listed per rule (default 3)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = service_engine()
    check_schema(engine)
    # The clinician's client may send an override reason as a bare code; the rules know its display.
    reasons = load_rules(settings.rules_dir, settings.profile).cards.override_reasons
    displays = {(r.system, r.code): r.display for r in reasons}
    sys.stdout.write(render(build_report(engine, args.since, args.top, displays), args.since, args.format))
    return 0
