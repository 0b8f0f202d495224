"""`lumbar-cds rules ...`: tools for the clinical content in rules/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cds_hooks.audit.audit_rules import load_measures, load_synthetic
from cds_hooks.pathway.rules import RulesError, load_rules
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    rules = sub.add_parser("rules", help="rules tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules/ and report errors with file and line")
    check.add_argument("--rules-dir", help="rules directory (default: built-in)")
    check.add_argument("--profile")
    check.set_defaults(func=_rules_check)


def _rules_check(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    rules_dir = Path(args.rules_dir) if args.rules_dir else settings.rules_dir
    try:
        rules = load_rules(rules_dir, args.profile or settings.profile)
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
    print(f"rules OK: {rules.source_dir}")
    print(f"  profiles: {', '.join(rules.pathway.profiles)} (active: {rules.profile_id})")
    print(f"  value sets: {len(rules.valuesets)} with {codes} codes ({unverified} marked unverified)")
    print(f"  citations: {len(rules.citations)}; services: {', '.join(rules.services)}")
    print(f"  audit measures: {', '.join(m.id for m in measures)}")
    return 0
