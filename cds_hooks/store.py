"""Durable storage (SQLite): the cards we issued and the feedback clinicians sent.

Issued cards carry no patient identifiers: uuid, rule, service, hook,
hookInstance and time are enough to trace feedback to the rule that fired.
Feedback is committed with a full fsync before the API acknowledges it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_hooks.cards import IssuedCard
from cds_hooks.wire import FeedbackItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS issued_cards (
    uuid TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    indicator TEXT NOT NULL,
    service_id TEXT NOT NULL,
    hook TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    profile TEXT NOT NULL,
    suggestion_uuids TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    known_card INTEGER NOT NULL,
    rule_id TEXT,
    outcome TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    accepted_suggestions TEXT,
    unknown_suggestions TEXT,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jti_seen (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (iss, jti)
);
"""
# Expired jti rows are deleted at most this often per process.
JTI_PRUNE_INTERVAL_SECONDS = 60.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._jti_pruned_at = float("-inf")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(SCHEMA)  # executescript manages its own transaction

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        # NORMAL is crash-safe in WAL mode; FULL also survives power loss, which
        # is what "acknowledged feedback is never lost" needs.
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def record_cards(
        self, service_id: str, hook: str, hook_instance: str, profile: str, issued: Iterable[IssuedCard]
    ) -> None:
        rows = [
            (
                item.card.uuid, item.rule_id, item.card.indicator, service_id, hook, hook_instance, profile,
                json.dumps([s.uuid for s in item.card.suggestions or ()]), _now(),
            )
            for item in issued
        ]
        if not rows:
            return
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO issued_cards VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def record_feedback(self, service_id: str, items: list[FeedbackItem]) -> list[dict[str, Any]]:
        """Store every item durably; unknown card or suggestion uuids are kept and flagged."""
        received = _now()
        results: list[dict[str, Any]] = []
        with self._tx(durable=True) as db:
            for item in items:
                row = db.execute(
                    "SELECT rule_id, suggestion_uuids FROM issued_cards WHERE uuid = ?", (item.card,)
                ).fetchone()
                accepted = [s.id for s in item.acceptedSuggestions or ()]
                known_suggestions = set(json.loads(row[1])) if row else set()
                unknown = [s for s in accepted if s not in known_suggestions]
                reason = item.overrideReason.reason if item.overrideReason else None
                db.execute(
                    "INSERT INTO feedback (service_id, card_uuid, known_card, rule_id, outcome,"
                    " outcome_timestamp, accepted_suggestions, unknown_suggestions, override_system,"
                    " override_code, override_display, user_comment, received_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        service_id, item.card, 1 if row else 0, row[0] if row else None, item.outcome,
                        item.outcomeTimestamp, json.dumps(accepted) if accepted else None,
                        json.dumps(unknown) if unknown else None,
                        reason.system if reason else None, reason.code if reason else None,
                        reason.display if reason else None,
                        item.overrideReason.userComment if item.overrideReason else None, received,
                    ),
                )
                results.append({"card": item.card, "knownCard": bool(row), "ruleId": row[0] if row else None,
                                "unknownSuggestions": unknown})
        return results

    def feedback_rows(self) -> list[dict[str, Any]]:
        db = self._connection()
        cursor = db.execute("SELECT * FROM feedback ORDER BY id")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def first_use_of_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record (iss, jti) until `expires_at`; False when it is already recorded and not yet expired.

        One atomic statement, so two gunicorn workers racing on the same token
        cannot both win. A stale row (its token long expired) is taken over.
        """
        with self._tx() as db:
            if now - self._jti_pruned_at >= JTI_PRUNE_INTERVAL_SECONDS:
                db.execute("DELETE FROM jti_seen WHERE expires_at < ?", (now,))
                self._jti_pruned_at = now
            cursor = db.execute(
                "INSERT INTO jti_seen (iss, jti, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (iss, jti) DO UPDATE SET expires_at = excluded.expires_at"
                " WHERE jti_seen.expires_at < ?",
                (iss, jti, expires_at, now),
            )
            return cursor.rowcount == 1

    def writable(self) -> bool:
        try:
            with self._tx() as db:
                db.execute("INSERT OR REPLACE INTO health VALUES (1, ?)", (_now(),))
            return True
        except sqlite3.Error:
            return False
