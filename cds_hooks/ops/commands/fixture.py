"""`lumbar-cds fixture ...`: the scenarios in fixtures/ as ready-to-send requests.

A fixture's dates are relative (`{{today-21d}}`), so its raw `request` is not what the service should
get: `fixture request NAME` prints it with the dates resolved, ready for curl.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from cds_hooks.ops.inputs import BadInput, read_json
from cds_hooks.sandbox.fixtures import fixture_paths, fixtures_dir, load_fixture, resolve_dates
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    fixture = sub.add_parser("fixture", help="the scenario fixtures (LUMBAR_CDS_FIXTURES_DIR, default built-in)")
    fixture_sub = fixture.add_subparsers(dest="fixture_command", required=True)
    request = fixture_sub.add_parser(
        "request", help="print a fixture's CDS Hooks request with its dates resolved, ready for curl")
    request.add_argument("name", help="a fixture name (see `lumbar-cds fixture list`) or a fixture file")
    request.set_defaults(func=_request)
    fixture_sub.add_parser("list", help="list the fixtures: name, service, title").set_defaults(func=_list)


def _fixtures() -> dict[str, Path]:
    return fixture_paths(Settings.from_env().fixtures_dir or fixtures_dir())


def _request(args: argparse.Namespace) -> int:
    known = _fixtures()
    path = known.get(args.name)
    if path is None and not Path(args.name).exists():
        raise BadInput(f"no fixture named {args.name!r}; `lumbar-cds fixture list` lists the {len(known)} there are")
    document = read_json(str(path or args.name), "a fixture file (see fixtures/)")
    if not isinstance(document, dict) or not isinstance(document.get("request"), dict):
        raise BadInput(f"{args.name} is not a fixture: it has no `request` object (see docs/fixtures.md)")
    sys.stdout.write(orjson.dumps(resolve_dates(document["request"], today_utc()), option=orjson.OPT_INDENT_2)
                     .decode() + "\n")
    service = document.get("service")
    if service:  # a hint for the person at the terminal; stdout stays the bare request for a pipe
        print(f"lumbar-cds: a request for {service}: POST it to /cds-services/{service}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    today = today_utc()
    for name, path in _fixtures().items():
        fixture = load_fixture(path, today)
        print(f"{name}  [{fixture.service}]  {fixture.title}")
    return 0
