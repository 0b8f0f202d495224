"""`lumbar-cds`: serve the API, evaluate a request file, check the rules, migrate the database, report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import date
from pathlib import Path

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.fhir.fetch import FhirFetcher
from cds_hooks.netpolicy.exposure import ExposureRefused, startup_notice
from cds_hooks.netpolicy.urls import is_loopback_host
from cds_hooks.ops.launch import DEFAULT_PORT, INSECURE, INSECURE_ENV, gunicorn_args
from cds_hooks.ops.report import FORMATS, build_report, render
from cds_hooks.pathway.rules import RulesError, load_rules
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.sandbox.fixtures import resolve_dates
from cds_hooks.service.hook import evaluate_hook, today_utc
from cds_hooks.settings.config import Settings, SettingsError, parse_flag, read_env
from cds_hooks.store.database import create_db_engine, safe_url
from cds_hooks.store.migrate import SchemaNotCurrent, check_schema, current_revision, head_revision, upgrade


def _serve_production(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn and the production configuration (`gunicorn_conf`)."""
    if _insecure(args):
        os.environ[INSECURE_ENV] = "1"  # gunicorn_conf applies the secure-default rule itself
    command = [sys.executable, "-m", "gunicorn", *gunicorn_args(args.host, args.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 1  # not reached


def _insecure(args: argparse.Namespace) -> bool:
    """--insecure, or LUMBAR_CDS_INSECURE read as gunicorn_conf reads it (a bad value is a SettingsError)."""
    return bool(args.insecure) or read_env(INSECURE, parse_flag, False)


def _serve(args: argparse.Namespace) -> int:
    if args.production:
        return _serve_production(args)
    from cds_hooks.app import create_app

    # The embedded default stays one command: a brand-new SQLite file gets its schema here.
    settings = Settings.from_env(auto_migrate=True)
    notice = startup_notice([args.host], settings.auth_enabled, _insecure(args), f"--insecure or {INSECURE_ENV}=1")
    if notice:
        print(notice, file=sys.stderr)
    if settings.sandbox is None:  # development on loopback: the sandbox page is on unless LUMBAR_CDS_SANDBOX=0
        settings = dataclasses.replace(settings, sandbox=is_loopback_host(args.host) and not settings.auth_enabled)
    app = create_app(settings)
    print(f"lumbar-cds: CDS Hooks discovery at http://{args.host}:{args.port}/cds-services", file=sys.stderr)
    if settings.sandbox:
        print(f"lumbar-cds: scenario sandbox at http://{args.host}:{args.port}/sandbox", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    document = orjson.loads(Path(args.request).read_bytes())
    fixture_profile = document.get("profile") if isinstance(document, dict) else None
    rules = load_rules(settings.rules_dir, args.profile or fixture_profile or settings.profile)
    today = today_utc()
    # A fixture file wraps the request and uses relative dates; a bare request is used as is.
    if isinstance(document, dict) and "request" in document and "expect" in document:
        body = resolve_dates(document["request"], today)
        service_id = args.service or document.get("service")
    else:
        body = document
        service_id = args.service
    if service_id is None:
        hook = body.get("hook") if isinstance(body, dict) else None
        service_id = next((s.id for s in rules.services.values() if s.hook == hook), None)
    service = rules.services.get(service_id or "")
    if service is None:
        print(f"error: no service for this request; choose one of {', '.join(rules.services)}", file=sys.stderr)
        return 2
    # Same fallback as the server: keys the request omits come from its fhirServer, if allowed.
    fetcher = FhirFetcher(settings.fetch_limits, settings.fhir_allowlist)
    try:
        outcome = evaluate_hook(rules, service, body, today, fetcher)
    except ServiceError as exc:
        print(f"HTTP {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        fetcher.close()
    response = outcome.response()
    if args.json:
        sys.stdout.write(orjson.dumps(response, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(f"{service.id} ({service.hook}), profile {rules.profile_id}: {len(response['cards'])} card(s)")
    for issued in outcome.issued:
        card = issued.card
        print(f"\n[{card.indicator.upper()}] {card.summary}")
        print(f"  rule: {issued.rule_id}   order: {issued.order_ref}")
        print("  " + (card.detail or "").replace("\n", "\n  "))
        for suggestion in card.suggestions or ():
            print(f"  -> suggestion: {suggestion.label}")
    if not outcome.issued:
        print("No cards: the orders are appropriate or outside the pathway.")
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    rules_dir = Path(args.rules_dir) if args.rules_dir else settings.rules_dir
    try:
        rules = load_rules(rules_dir, args.profile or settings.profile)
    except RulesError as exc:
        print(f"rules check FAILED: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    codes = sum(len(v.codes) for v in rules.valuesets.values())
    unverified = sum(1 for v in rules.valuesets.values() for c in v.codes if not c.verified)
    print(f"rules OK: {rules.source_dir}")
    print(f"  profiles: {', '.join(rules.pathway.profiles)} (active: {rules.profile_id})")
    print(f"  value sets: {len(rules.valuesets)} with {codes} codes ({unverified} marked unverified)")
    print(f"  citations: {len(rules.citations)}; services: {', '.join(rules.services)}")
    return 0


def _engine() -> Engine:
    """The service's database, from the same settings as the service."""
    return create_db_engine(Settings.from_env().store_url)


def _db_upgrade(args: argparse.Namespace) -> int:
    engine = _engine()
    before = current_revision(engine)
    after = upgrade(engine)
    change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    print(f"database {safe_url(engine.url)}: {change} revision {after}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    engine = _engine()
    found, needed = current_revision(engine), head_revision()
    state = "up to date" if found == needed else f"needs `lumbar-cds db upgrade` to {needed}"
    print(f"database {safe_url(engine.url)}: revision {found or 'none'} ({state})")
    return 0 if found == needed else 1


def _report(args: argparse.Namespace) -> int:
    engine = _engine()
    check_schema(engine)
    sys.stdout.write(render(build_report(engine, args.since, args.top), args.since, args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumbar-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the development server, or gunicorn with --production")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--production", action="store_true",
        help="run gunicorn with cds_hooks.ops.gunicorn_conf (workers from CPU count; see docs/operations.md)",
    )
    serve.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without authentication (no trusted issuers configured)",
    )
    serve.set_defaults(func=_serve)

    evaluate = sub.add_parser("evaluate", help="print the cards a request (or fixture) would get")
    evaluate.add_argument("request", help="a CDS Hooks request JSON file, or a fixture file")
    evaluate.add_argument("--json", action="store_true", help="print the CDS Hooks response JSON")
    evaluate.add_argument("--service", help="service id (default: from the fixture or the hook)")
    evaluate.add_argument("--profile", help="rules profile (default: LUMBAR_CDS_PROFILE or the rules default)")
    evaluate.set_defaults(func=_evaluate)

    rules = sub.add_parser("rules", help="rules tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules/ and report errors with file and line")
    check.add_argument("--rules-dir", help="rules directory (default: built-in)")
    check.add_argument("--profile")
    check.set_defaults(func=_rules_check)

    db = sub.add_parser("db", help="database schema (LUMBAR_CDS_DATABASE_URL, default SQLite under the data dir)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations (safe to repeat)").set_defaults(func=_db_upgrade)
    db_sub.add_parser("current", help="show the schema revision; exit 1 when an upgrade is needed").set_defaults(
        func=_db_current
    )

    report = sub.add_parser("report", help="per rule: cards issued, accepted, overridden, top override reasons")
    report.add_argument("--since", type=date.fromisoformat, help="only cards issued on or after this day (YYYY-MM-DD)")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--top", type=int, default=3, help="override reasons listed per rule (default 3)")
    report.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RulesError as exc:
        print("error: the rules did not load:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 1
    except (SettingsError, ExposureRefused, SchemaNotCurrent) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The driver's own message (never the URL, so no password); the statement is left out.
        print(f"error: database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
