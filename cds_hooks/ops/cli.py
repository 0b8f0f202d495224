"""`lumbar-cds`: serve the API, evaluate a request file, print a fixture's request, check the rules, migrate the
database, report.

Each command group lives in `ops/commands/`; this module assembles the parser and turns the errors
every command can meet into one line and an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.netpolicy.exposure import ExposureRefused
from cds_hooks.ops.commands import audit, db, evaluate, fixture, report, rules, serve, synth
from cds_hooks.ops.inputs import BadInput
from cds_hooks.pathway.rules import RulesError
from cds_hooks.settings.config import SettingsError
from cds_hooks.store.migrate import SchemaNotCurrent

COMMANDS = (serve, evaluate, fixture, rules, db, report, audit, synth)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumbar-cds", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RulesError as exc:
        print("error: the rules did not load:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 1
    except (SettingsError, ExposureRefused, SchemaNotCurrent, BadInput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away early (`| head`): what it wanted is printed. No traceback at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SQLAlchemyError as exc:
        # The driver's own message (never the URL, so no password); the statement is left out.
        print(f"error: database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
