"""`lumbar-cds report`: the committee report of issued cards and feedback."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cds_hooks.ops.commands.db import service_engine
from cds_hooks.ops.report import FORMATS, build_report, render
from cds_hooks.store.migrate import check_schema


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="per rule: cards issued, accepted, overridden, top override reasons")
    report.add_argument("--since", type=date.fromisoformat, help="only cards issued on or after this day (YYYY-MM-DD)")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--top", type=int, default=3, help="override reasons listed per rule (default 3)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    engine = service_engine()
    check_schema(engine)
    sys.stdout.write(render(build_report(engine, args.since, args.top), args.since, args.format))
    return 0
