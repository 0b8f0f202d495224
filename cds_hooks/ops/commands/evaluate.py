"""`lumbar-cds evaluate`: the cards a request or fixture file would get, exactly as the EHR would get them."""

from __future__ import annotations

import argparse
import sys

import orjson

from cds_hooks.fhir.fetch import FhirFetcher
from cds_hooks.ops.inputs import read_json
from cds_hooks.pathway.rules import load_rules
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.protocol.pama import rating_of
from cds_hooks.sandbox.fixtures import resolve_dates
from cds_hooks.service.hook import evaluate_hook, today_utc
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="print the cards a request (or fixture) would get")
    evaluate.add_argument("request", help="a CDS Hooks request JSON file, or a fixture file")
    evaluate.add_argument("--json", action="store_true", help="print the CDS Hooks response JSON")
    evaluate.add_argument("--service", help="service id (default: from the fixture or the hook)")
    evaluate.add_argument("--profile", help="rules profile (default: LUMBAR_CDS_PROFILE or the rules default)")
    evaluate.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    document = read_json(args.request, "a CDS Hooks request or a fixture (JSON)")
    settings = Settings.from_env()
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
    for action in outcome.system_actions:
        resource = action.resource or {}
        print(f"Appropriateness rating of ServiceRequest/{resource.get('id')}: {rating_of(resource)}")
    return 0
