"""`lumbar-cds rules ...`: tools for the clinical content in rules/."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from cds_hooks.pathway.rules import Rules, RulesError, default_rules_dir, load_rules
from cds_hooks.pathway.rules.published import PUBLISHED_DIR, PublishedError, import_valueset
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    rules = sub.add_parser("rules", help="rules tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules/ and report errors with file and line")
    check.add_argument("--rules-dir", help="rules directory (default: built-in)")
    check.add_argument("--profile")
    check.set_defaults(func=_rules_check)
    imp = rules_sub.add_parser(
        "import-valueset",
        help="import a published (VSAC) expansion whole into rules/valuesets/published/",
        description="Writes the expansion, every code and its provenance, as rules/valuesets/published/ID.json. "
                    "Record why the set is used and any exclusions in rules/valuesets/published/decisions.yaml; "
                    "`rules check` fails until you do.")
    imp.add_argument("file", help="a value-set reference-pack JSON file (oid, version, source, codes)")
    imp.add_argument("--id", required=True, help="value set id in rules/ (lower-case, dashes)")
    imp.add_argument("--kind", required=True, help="value set kind, e.g. red-flag")
    imp.add_argument("--category", help="red-flag category, modality or other category")
    imp.add_argument("--title", help="title shown in rules check and the docs (default: the set's name)")
    imp.add_argument("--rules-dir", help="rules directory to write into (default: the repository's rules/)")
    imp.set_defaults(func=_rules_import)


def _rules_import(args: argparse.Namespace) -> int:
    rules_dir = Path(args.rules_dir) if args.rules_dir else default_rules_dir()
    try:
        target = import_valueset(Path(args.file), rules_dir.joinpath(*PUBLISHED_DIR), args.id, args.kind,
                                 args.category, args.title)
    except PublishedError as exc:
        print(f"import FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"imported {args.file} -> {target}")
    try:
        load_rules(rules_dir)
    except RulesError as exc:
        print("now record the decision; rules check says:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def _describe(rules: Rules) -> list[str]:
    """One line per value set: id, kind/category, size by code system, and where it comes from."""
    lines = []
    for vs in rules.valuesets.values():
        counts = Counter(rules.system_name(c.system) for c in vs.codes)
        size = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        what = f"{vs.kind}/{vs.category}" if vs.category else vs.kind
        excluded = f"; {len(vs.exclusions)} excluded" if vs.exclusions else ""
        origin = "published " + vs.source if vs.published else "curated, a source per code"
        lines.append(f"    {vs.id} [{what}] {len(vs.codes)} codes ({size}{excluded}): {origin}")
    for item in rules.published_not_used:
        lines.append(f"    not used: {item.name} {item.oid}: {item.reason}")
    return lines


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
    published = sum(1 for v in rules.valuesets.values() if v.published)
    unverified = sum(1 for v in rules.valuesets.values() for c in v.codes if not c.verified)
    print(f"rules OK: {rules.source_dir}")
    print(f"  profiles: {', '.join(rules.pathway.profiles)} (active: {rules.profile_id})")
    print(f"  value sets: {len(rules.valuesets)} with {codes} codes ({published} published, imported whole; "
          f"{unverified} curated codes marked unverified)")
    print("\n".join(_describe(rules)))
    print(f"  citations: {len(rules.citations)}; services: {', '.join(rules.services)}")
    return 0
