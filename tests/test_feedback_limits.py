"""Hostile feedback: refused with an OperationOutcome, and the store stays all-or-nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from cds_hooks.protocol.wire import FeedbackItem
from tests.conftest import migrated_store

URL = "/cds-services/lumbar-pathway-order-select/feedback"
MAX_BODY = 5 * 1024 * 1024


def item(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"card": f"card-{n}", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z", **extra}


def rows(app: Flask) -> int:
    path: Path = app.extensions["lumbar_cds.settings"].database_path
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM feedback").fetchone()[0]


def post(app: Flask, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = app.test_client().post(URL, data=data, content_type="application/json")
    return response.status_code, orjson.loads(response.get_data())


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"nested": value}
    return value


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"feedback": [item(i) for i in range(101)]}, 413, ["At most 100"]),
    ({"feedback": [item(i) for i in range(5000)]}, 413, ["At most 100"]),
    ({"feedback": [item(1), item(2), {**item(3), "outcome": "maybe"}]}, 422, ["feedback.2.outcome"]),
    ({"feedback": [item(1), {**item(2), "card": ""}]}, 422, ["feedback.1.card"]),
    ({"feedback": [item(1), item(2, overrideReason={"userComment": "x" * 10_001})]}, 422, ["userComment"]),
    ({"feedback": [item(1), item(2, acceptedSuggestions=[{"id": "s"}] * 51)]}, 422, ["acceptedSuggestions"]),
    ({"feedback": [item(1), item(2, extension=deep(70))]}, 422, ["64 levels"]),
    ({"feedback": [item(1)] * 2, "padding": "x" * MAX_BODY}, 413, ["bytes"]),
    ({"feedback": {"0": item(1)}}, 422, ["feedback"]),
    ({"feedback": [1, "x", None]}, 422, ["feedback.0"]),
    ([item(1)], 422, ["JSON object"]),
    (b'{"feedback": [' + orjson.dumps(item(1)), 400, ["not valid JSON"]),
    (b'{"feedback": [{"card": "\xff"}]}', 400, ["not valid JSON"]),
])
def test_hostile_feedback_is_refused_and_stores_nothing(
    app: Flask, body: Any, status: int, words: list[str]
) -> None:
    assert post(app, {"feedback": [item(0)]})[0] == 200  # something already stored
    before = rows(app)
    got, outcome = post(app, body)
    assert got == status
    assert outcome["resourceType"] == "OperationOutcome"
    for word in words:
        assert word in outcome["issue"][0]["diagnostics"]
    assert rows(app) == before


def test_exactly_the_limit_is_stored(app: Flask) -> None:
    status, body = post(app, {"feedback": [item(i) for i in range(100)]})
    assert (status, body) == (200, {"stored": 100, "unknownCards": 100})
    assert rows(app) == 100


def test_item_limit_is_a_setting(make_app: Callable[..., Flask]) -> None:
    app = make_app(max_feedback_items=2)
    assert post(app, {"feedback": [item(1), item(2), item(3)]})[0] == 413
    assert post(app, {"feedback": [item(1), item(2)]})[0] == 200
    assert rows(app) == 2


def test_odd_but_valid_text_is_stored_verbatim(app: Flask) -> None:
    comment = "NUL\u0000 tab\t quote\" emoji \U0001f600 " + "é" * 5000
    status, _ = post(app, {"feedback": [item(1, overrideReason={"userComment": comment})]})
    assert status == 200
    assert app.extensions["lumbar_cds.store"].feedback_rows()[-1]["user_comment"] == comment


def test_a_failure_mid_batch_rolls_back_every_item(tmp_path: Path) -> None:
    """Real fault: SQLite cannot bind a lone surrogate, raised on the third insert."""
    store = migrated_store(tmp_path / "db.sqlite3")
    items = [FeedbackItem.model_validate(item(i)) for i in range(3)]
    items[2] = items[2].model_copy(update={"outcomeTimestamp": "bad \ud800"})
    with pytest.raises(UnicodeEncodeError):
        store.record_feedback("svc", items)
    assert store.feedback_rows() == []
    assert len(store.record_feedback("svc", items[:2])) == 2  # the store is still usable
    assert len(store.feedback_rows()) == 2
