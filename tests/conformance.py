"""CDS Hooks 2.0 response checks, ported from the reference checklist (§1.1, §1.7).

Used by every test that gets cards back, so each response is checked against
the spec, not only against our expectations.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_hooks.pathway.cards import RULES_EXTENSION
from cds_hooks.protocol.pama import RATINGS, rating_of

REF = re.compile(r"^[A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def assert_no_null_or_empty(value: Any, path: str = "$") -> None:
    """No JSON null, "", [] or {} anywhere (spec §Use of JSON)."""
    assert value is not None, f"{path} is null"
    if isinstance(value, str):
        assert value != "", f"{path} is an empty string"
    elif isinstance(value, list):
        assert value, f"{path} is an empty array"
        for i, item in enumerate(value):
            assert_no_null_or_empty(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        assert value, f"{path} is an empty object"
        for key, item in value.items():
            assert_no_null_or_empty(item, f"{path}.{key}")


def draft_refs(request: dict[str, Any]) -> set[str]:
    bundle = request["context"]["draftOrders"]
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


def draft_resources(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    bundle = request["context"]["draftOrders"]
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle.get("entry", [])}


def assert_rating_actions(response: dict[str, Any], request: dict[str, Any]) -> None:
    """systemActions: updates of draft orders that change nothing but add the PAMA rating (so the order is
    as valid as the EHR sent it); the same list under extension.systemActions, where the Argonaut PAMA
    guide and the CDS Hooks Sandbox read it."""
    actions = response.get("systemActions")
    if actions is None:
        assert "extension" not in response
        return
    assert response["extension"] == {"systemActions": actions}
    drafts = draft_resources(request)
    for action in actions:
        assert action["type"] == "update" and action["description"]
        resource = action["resource"]
        ref = f"ServiceRequest/{resource['id']}"
        assert ref in drafts, "a system action must update a draft order"
        unrated = {k: v for k, v in resource.items() if k != "extension"}
        assert unrated == {k: v for k, v in drafts[ref].items() if k != "extension"}, "a rating changes nothing else"
        assert rating_of(resource) in RATINGS
        model = get_fhir_model_class("ServiceRequest")
        try:
            model.model_validate(drafts[ref])
        except ValueError:
            continue  # messy EHR input, echoed as sent
        model.model_validate(resource)


def assert_conformant(response: dict[str, Any], request: dict[str, Any]) -> None:
    assert set(response) <= {"cards", "systemActions", "extension"}
    assert isinstance(response["cards"], list)
    assert_rating_actions(response, request)
    drafts = draft_refs(request)
    uuids: set[str] = set()
    for card in response["cards"]:
        assert_no_null_or_empty(card, "card")
        assert set(card) <= {
            "uuid", "summary", "detail", "indicator", "source", "suggestions",
            "selectionBehavior", "overrideReasons", "links", "extension",
        }
        # CDS Hooks 2.0 extensions: an object of namespaced keys; ours names the rules version.
        assert all("." in key for key in card.get("extension", {})), card.get("extension")
        assert card["extension"][RULES_EXTENSION]["version"]
        uuid.UUID(card["uuid"])
        uuids.add(card["uuid"])
        assert isinstance(card["summary"], str) and len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        source = card["source"]
        assert source["label"]
        assert source["url"].startswith(("http://", "https://"))
        assert {"system", "code"} <= set(source["topic"])
        if "suggestions" in card:
            assert card["selectionBehavior"] in ("at-most-one", "any")
            recommended = [s for s in card["suggestions"] if s.get("isRecommended")]
            if card["selectionBehavior"] == "at-most-one":
                assert len(recommended) <= 1
            for suggestion in card["suggestions"]:
                assert suggestion["label"]
                uuid.UUID(suggestion["uuid"])
                uuids.add(suggestion["uuid"])
                assert suggestion["actions"]
                for action in suggestion["actions"]:
                    assert action["type"] in ("create", "update", "delete")
                    assert action["description"]
                    if action["type"] == "delete":
                        assert REF.match(action["resourceId"])
                        assert action["resourceId"] in drafts, "delete must point at a draft order"
                        assert "resource" not in action
                    else:
                        resource = action["resource"]
                        # Exact R4: the resource must validate as-is.
                        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                    if action["type"] == "update":
                        ref = f"{action['resource']['resourceType']}/{action['resource']['id']}"
                        assert ref in drafts, "update must target a draft order"
                        # The CDS Hooks Sandbox applies an update only with a rating (and throws without one).
                        assert rating_of(action["resource"]) in RATINGS
        for reason in card.get("overrideReasons", []):
            assert reason["code"] and reason["system"] and reason["display"]
        for link in card.get("links", []):
            assert link["label"] and link["type"] in ("absolute", "smart")
            assert link["url"].startswith(("http://", "https://"))
            if link["type"] == "absolute":
                assert "appContext" not in link
    # uuids are fresh: no two cards or suggestions share one
    total = len(response["cards"]) + sum(len(c.get("suggestions", [])) for c in response["cards"])
    assert len(uuids) == total
