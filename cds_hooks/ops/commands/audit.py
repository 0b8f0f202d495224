"""`lumbar-cds audit`: the live pathway over a Bulk FHIR export, with the LBP imaging measures (docs/audit.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from cds_hooks.audit.bulk_client import BulkError
from cds_hooks.audit.ndjson import SourceError
from cds_hooks.audit.run import AuditRequest, run_audit


def _period(text: str) -> tuple[date, date]:
    start, sep, end = text.partition(":")
    try:
        period = (date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:
        raise argparse.ArgumentTypeError("--period is FROM:TO, two dates YYYY-MM-DD") from None
    if not sep or period[0] > period[1]:
        raise argparse.ArgumentTypeError("--period is FROM:TO with FROM on or before TO")
    return period


def register(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="judge every lumbar imaging order and spine-surgery referral in a Bulk "
                                         "FHIR export with the live pathway; write report.json, .csv and .html")
    audit.add_argument("source", nargs="?", type=Path, help="a directory of NDJSON files, or a Bulk manifest")
    audit.add_argument("--out", type=Path, required=True, help="directory for report.json, report.csv, report.html")
    audit.add_argument("--fhir-server", help="run a Bulk $export on this FHIR server instead of reading SOURCE "
                                             "(must be on LUMBAR_CDS_FHIR_ALLOWLIST, or loopback)")
    audit.add_argument("--export-level", choices=("system", "patient", "group"), default="system")
    audit.add_argument("--group", help="Group id for --export-level group")
    audit.add_argument("--type", dest="types", default="",
                       help="comma-separated _type for the export (default: the types the pathway reads)")
    audit.add_argument("--since", help="_since for the export (FHIR instant)")
    audit.add_argument("--period", type=_period, help="orders placed FROM:TO (default: the 12 months up to the "
                                                       "export's transactionTime); also the measurement period")
    audit.add_argument("--profile", help="rules profile (default: LUMBAR_CDS_PROFILE or the rules default)")
    audit.add_argument("--service", help="CDS service whose prefetch is rebuilt (default: the order-sign one)")
    audit.add_argument("--engine", choices=("local", "spark"), default="local")
    audit.add_argument("--spark-master", default="local[*]", help="Spark master URL (default local[*])")
    audit.add_argument("--workers", type=int, help="processes for the local engine (default: one per core)")
    audit.add_argument("--sample", type=int, default=0, metavar="N", help="de-identified example cards per rule")
    audit.add_argument("--min-cell", type=int, help="suppress counts below this (default LUMBAR_CDS_AUDIT_MIN_CELL)")
    audit.add_argument("--match-days", type=int, default=30,
                       help="a study within this many days after an order of its kind is that order's result")
    audit.add_argument("--workdir", type=Path, help="where the on-disk partitions go (default: the system temp)")
    audit.add_argument("--no-progress", action="store_true", help="no progress bar")
    audit.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    if (args.source is None) == (args.fhir_server is None):
        print("error: give SOURCE (a directory or manifest) or --fhir-server, not both", file=sys.stderr)
        return 2
    if args.export_level == "group" and not args.group:
        print("error: --export-level group needs --group ID", file=sys.stderr)
        return 2
    request = AuditRequest(
        out=args.out, source=args.source, fhir_server=args.fhir_server, export_level=args.export_level,
        group=args.group, types=tuple(t for t in args.types.split(",") if t), since=args.since, period=args.period,
        profile=args.profile, service=args.service, engine=args.engine, spark_master=args.spark_master,
        workers=args.workers, samples=args.sample, min_cell=args.min_cell, match_days=args.match_days,
        progress=False if args.no_progress else None, workdir=args.workdir,
    )
    try:
        report = run_audit(request)
    except (SourceError, BulkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    orders = report["orders"]
    print(f"audited {orders['total']} orders of {report['data']['patients']} patients "
          f"({report['period']['from']} to {report['period']['to']}, profile {report['rules']['profile']}): "
          f"{orders['warned']} would warn, {orders['redFlag']} kept quiet by a red flag; "
          f"report in {args.out}/report.html")
    return 0
