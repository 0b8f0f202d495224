"""A writer process for the concurrency test; a small module, so that spawned workers start fast."""

from __future__ import annotations

from cds_hooks.protocol.wire import FeedbackItem
from cds_hooks.store.repository import Store

WRITES_PER_WORKER = 25


def overridden(card: str, code: str | None = None) -> FeedbackItem:
    reason = {"reason": {"system": "urn:test", "code": code}} if code else None
    return FeedbackItem.model_validate(
        {"card": card, "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    )


def write_feedback(url: str, worker: int) -> None:
    """One worker process: its own engine, one committed transaction per write."""
    store = Store(url)
    for i in range(WRITES_PER_WORKER):
        store.record_feedback("svc", [overridden(f"w{worker}-{i}")])
        assert store.first_use_of_jti("iss", f"w{worker}-{i}", expires_at=2000.0, now=1000.0)
