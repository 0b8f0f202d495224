"""`lumbar-cds synth`: write a reproducible synthetic population as Bulk Data NDJSON (docs/audit.md)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from cds_hooks.audit.synth import generate
from cds_hooks.pathway.rules import load_rules
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="write a seeded synthetic population as Bulk Data NDJSON, with a manifest")
    synth.add_argument("--patients", type=int, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=1, help="the same seed writes the same files (default 1)")
    synth.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31),
                       help="the export's date: histories end here (default 2025-12-31)")
    synth.add_argument("--gzip", action="store_true", help="write *.ndjson.gz")
    synth.add_argument("--visits-per-year", type=int, default=8, help="ordinary visits per patient-year (about)")
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    rules = load_rules(settings.rules_dir, settings.profile)
    counts = generate(rules, args.patients, args.out, args.seed, args.end, args.gzip, args.visits_per_year)
    print(f"wrote {sum(counts.values())} resources of {args.patients} patients to {args.out} "
          f"({', '.join(f'{t} {n}' for t, n in sorted(counts.items()))})")
    return 0
