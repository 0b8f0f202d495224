"""`lumbar-cds rules ...`: tools for the clinical content in rules/: check it, export it as FHIR knowledge
artifacts, show what changed between two versions, and render the pathway document."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
from pydantic import ValidationError

from cds_hooks.audit.audit_rules import load_measures, load_synthetic
from cds_hooks.governance.diff import diff_rules
from cds_hooks.governance.diff_render import FORMATS, render_diff
from cds_hooks.governance.doc_html import render_html
from cds_hooks.governance.doc_markdown import MarkersMissing, render_markdown, replace_generated
from cds_hooks.governance.fhir_bundle import export_bundle, transaction
from cds_hooks.governance.flow import DiagramError
from cds_hooks.governance.gitref import GitRefError, rules_at
from cds_hooks.pathway.rules import Rules, RulesError, default_rules_dir, load_rules
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    rules = sub.add_parser("rules", help="rules tools: check, export, diff, doc")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules/ and report errors with file and line")
    _source(check)
    check.set_defaults(func=_rules_check)

    export = rules_sub.add_parser("export", help="write the rules as FHIR R4 knowledge artifacts (a Bundle)")
    _source(export)
    export.add_argument("--format", choices=("fhir",), required=True)
    export.add_argument("--type", choices=("collection", "transaction"), default="collection",
                        help="collection (default), or transaction: PUTs to load into a FHIR server")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=_rules_export)

    diff = rules_sub.add_parser("diff", help="what changed between two rules directories, for the committee")
    diff.add_argument("dirs", nargs="*", type=Path, metavar="DIR",
                      help="OLD NEW; with --git REF only NEW (default: the rules in use)")
    diff.add_argument("--git", metavar="REF", help="compare the rules as committed at REF (OLD) with NEW")
    diff.add_argument("--format", choices=FORMATS, default="text")
    diff.set_defaults(func=_rules_diff)

    doc = rules_sub.add_parser("doc", help="the whole pathway as one HTML page, or the Markdown part of a document")
    _source(doc)
    doc.add_argument("--output", type=Path, help="HTML file to write (default: standard output)")
    doc.add_argument("--markdown", type=Path, metavar="FILE",
                     help="instead of HTML, rewrite the generated part of FILE (e.g. docs/pathway.md)")
    doc.add_argument("--check", action="store_true", help="with --markdown: change nothing, exit 1 if out of date")
    doc.set_defaults(func=_rules_doc)


def _source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules-dir", type=Path, help="rules directory (default: LUMBAR_CDS_RULES_DIR or built-in)")
    parser.add_argument("--profile", help="profile (default: LUMBAR_CDS_PROFILE or the rules' default)")


def _load(args: argparse.Namespace) -> Rules:
    settings = Settings.from_env()
    return load_rules(args.rules_dir or settings.rules_dir, args.profile or settings.profile)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def _rules_check(args: argparse.Namespace) -> int:
    try:
        rules = _load(args)
        # The audit's own files (rules/measures.yaml, rules/synthetic.yaml), checked against the value sets.
        measures = load_measures(rules)
        load_synthetic(rules)
    except RulesError as exc:
        print(f"rules check FAILED: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    codes = sum(len(v.codes) for v in rules.valuesets.values())
    unverified = sum(1 for v in rules.valuesets.values() for c in v.codes if not c.verified)
    gov = rules.governance
    approval = gov.approval
    approved = f"approved {approval.date} by {approval.approver} ({approval.committee})" if approval else "not approved"
    print(f"rules OK: {rules.source_dir}")
    print(f"  {gov.id} version {gov.version}, {gov.status}, effective {gov.effective}; {approved}")
    print(f"  profiles: {', '.join(rules.pathway.profiles)} (active: {rules.profile_id})")
    print(f"  value sets: {len(rules.valuesets)} with {codes} codes ({unverified} marked unverified)")
    print(f"  citations: {len(rules.citations)}; services: {', '.join(rules.services)}")
    print(f"  audit measures: {', '.join(m.id for m in measures)}")
    return 0


def _rules_export(args: argparse.Namespace) -> int:
    rules = _load(args)
    try:
        bundle = export_bundle(rules)
    except ValidationError as exc:  # a rules value FHIR R4 cannot carry: name it
        print(f"error: the export is not valid FHIR R4: {exc}", file=sys.stderr)
        return 1
    if args.type == "transaction":
        bundle = transaction(bundle)
    _write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode() + "\n", args.output)
    return 0


def _rules_diff(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    current = settings.rules_dir or default_rules_dir()
    if args.git:
        if len(args.dirs) > 1:
            print("error: with --git REF give at most one directory (NEW)", file=sys.stderr)
            return 2
        new_dir = args.dirs[0] if args.dirs else current
        with tempfile.TemporaryDirectory(prefix="lumbar-cds-rules-") as tmp:
            try:
                old_dir = rules_at(new_dir, args.git, Path(tmp))
            except GitRefError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            old = load_rules(old_dir, require_governance=False)
    elif len(args.dirs) == 2:
        old = load_rules(args.dirs[0], require_governance=False)
        new_dir = args.dirs[1]
    else:
        print("error: give OLD and NEW rules directories, or --git REF", file=sys.stderr)
        return 2
    new = load_rules(new_dir, require_governance=False)
    sys.stdout.write(render_diff(diff_rules(old, new), old.governance, new.governance, args.format))
    return 0


def _rules_doc(args: argparse.Namespace) -> int:
    rules = _load(args)
    try:
        if args.markdown is None:
            _write(render_html(rules), args.output)
            return 0
        document = args.markdown.read_text(encoding="utf-8")
        updated = replace_generated(document, render_markdown(rules))
    except (DiagramError, MarkersMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if updated == document:
        print(f"{args.markdown}: the generated part is up to date")
        return 0
    if args.check:
        print(f"{args.markdown}: the generated part is out of date; run lumbar-cds rules doc --markdown "
              f"{args.markdown}", file=sys.stderr)
        return 1
    args.markdown.write_text(updated, encoding="utf-8")
    print(f"{args.markdown}: generated part rewritten from {rules.source_dir}")
    return 0
