"""Durable storage (SQLAlchemy Core): the cards we issued, the feedback clinicians sent, used JWT ids.

Issued cards carry no patient identifiers: uuid, rule, rules version, service,
hook, hookInstance and time are enough to trace feedback to the rule that fired.
Every write is committed before the method returns, so before the API answers:
on SQLite with a full fsync (see database.py), on PostgreSQL with its default
synchronous commit. The schema itself is created by the Alembic migrations
(cds_hooks/migrations); these table definitions only describe it for queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, Table, Text, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.pathway.cards import IssuedCard
from cds_hooks.protocol.wire import FeedbackItem
from cds_hooks.settings.database_url import sqlite_url
from cds_hooks.store import basis as basis_store
from cds_hooks.store import memory as memory_store
from cds_hooks.store.database import create_db_engine
from cds_hooks.store.memory import MemoryPolicy
from cds_hooks.store.resolution import latest_per_card, stamp

metadata = MetaData()
issued_cards = Table(
    "issued_cards", metadata,
    Column("uuid", Text, primary_key=True),
    Column("rule_id", Text, nullable=False),
    Column("indicator", Text, nullable=False),
    Column("service_id", Text, nullable=False),
    Column("hook", Text, nullable=False),
    Column("hook_instance", Text, nullable=False),
    Column("profile", Text, nullable=False),
    Column("suggestion_uuids", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Column("rules_version", Text),  # rules/governance.yaml version; NULL for cards issued before 0002
    Column("silent", Integer, nullable=False),  # 1: recorded in silent mode, never shown
)
feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", Text, nullable=False),
    Column("card_uuid", Text, nullable=False),
    Column("known_card", Integer, nullable=False),
    Column("rule_id", Text),
    Column("outcome", Text, nullable=False),
    Column("outcome_timestamp", Text, nullable=False),
    Column("accepted_suggestions", Text),
    Column("unknown_suggestions", Text),
    Column("override_system", Text),
    Column("override_code", Text),
    Column("override_display", Text),
    Column("user_comment", Text),
    Column("received_at", Text, nullable=False),
    Index("feedback_card", "card_uuid"),
    sqlite_autoincrement=True,
)
health = Table(
    "health", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("checked_at", Text, nullable=False),
)
jti_seen = Table(
    "jti_seen", metadata,
    Column("iss", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("expires_at", Float, nullable=False),
)
# Expired jti rows (and expired override memories) are deleted at most this often per process.
JTI_PRUNE_INTERVAL_SECONDS = 60.0


def now_text() -> str:
    """Stored times: ISO 8601 UTC with milliseconds and Z, so text order is time order."""
    return stamp(datetime.now(UTC))


class Store:
    """`Store(url)` for a database URL, or `Store(path)` for an SQLite file. The schema must be migrated.

    With a `memory` policy, the store also keeps override memory (memory.py); `clock` is its time."""

    def __init__(self, target: str | Path, memory: MemoryPolicy | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine: Engine = create_db_engine(sqlite_url(target) if isinstance(target, Path) else target)
        self.memory = memory
        self.clock = clock
        self._jti_pruned_at = float("-inf")
        self._memory_pruned_at: datetime | None = None
        self._statements: dict[tuple[Any, ...], Any] = {}

    def _upsert(self, table: Table, keys: list[str], update: list[str], where: Any = None) -> Any:
        """INSERT ... ON CONFLICT (keys) DO UPDATE SET update [WHERE where], in this backend's dialect.

        Values are bound at execution, so the compiled statement is cached and reused: compiling
        it per call cost more than the write itself."""
        key = (table.name, tuple(keys), tuple(update), str(where))
        cached = self._statements.get(key)
        if cached is not None:
            return cached
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)
        self._statements[key] = statement = insert.on_conflict_do_update(
            index_elements=keys, set_={name: insert.excluded[name] for name in update}, where=where
        )
        return statement

    def record_cards(
        self, service_id: str, hook: str, hook_instance: str, profile: str, issued: Iterable[IssuedCard],
        subject: str | None = None,
        silent: bool = False,
    ) -> None:
        """Record the cards issued; with override memory on and the patient's `subject` (memory.subject),
        tie them to the patient's keyed hash so that an override can start a memory."""
        now = self.clock()
        issued_at = stamp(now)
        rows = [
            {
                "uuid": item.card.uuid, "rule_id": item.rule_id, "indicator": item.card.indicator,
                "service_id": service_id, "hook": hook, "hook_instance": hook_instance, "profile": profile,
                "suggestion_uuids": json.dumps([s.uuid for s in item.card.suggestions or ()]),
                "issued_at": issued_at, "rules_version": item.rules_version, "silent": int(silent),
            }
            for item in issued
        ]
        if not rows:
            return
        columns = [c.name for c in issued_cards.columns if c.name != "uuid"]
        with self.engine.begin() as db:
            db.execute(self._upsert(issued_cards, ["uuid"], columns), rows)
            if self.memory is not None and subject is not None:
                memory_store.remember_patient(db, self.memory, [row["uuid"] for row in rows], subject, now)

    def recall(self, subject: str, rule_ids: Iterable[str]) -> dict[str, str]:
        """Rules override memory silences for this patient now, each with the overridden card behind it."""
        if self.memory is None:
            return {}
        now = self.clock()
        with self.engine.begin() as db:
            if self._memory_pruned_at is None or (now - self._memory_pruned_at).total_seconds() >= \
                    JTI_PRUNE_INTERVAL_SECONDS:
                memory_store.prune(db, self.memory, now)
                self._memory_pruned_at = now
            return memory_store.recall(db, self.memory, subject, rule_ids, now)

    def record_silenced(self, service_id: str, hook: str, hook_instance: str, profile: str,
                        silenced: Iterable[tuple[IssuedCard, str]]) -> None:
        """Cards override memory withheld, each with the overridden card behind it (for the report)."""
        rows = [{"rule_id": item.rule_id, "service_id": service_id, "hook": hook, "hook_instance": hook_instance,
                 "profile": profile, "remembered_card": remembered, "rules_version": item.rules_version}
                for item, remembered in silenced]
        if rows:
            with self.engine.begin() as db:
                memory_store.record_silenced(db, rows, self.clock())

    def record_feedback(self, service_id: str, items: list[FeedbackItem]) -> list[dict[str, Any]]:
        """Store every item, all or nothing; unknown card or suggestion uuids are kept and flagged.
        With override memory on, each known card's memory follows its latest feedback, in the same
        transaction."""
        now = self.clock()
        received = stamp(now)
        results: list[dict[str, Any]] = []
        with self.engine.begin() as db:
            for item in items:
                card = db.execute(
                    select(issued_cards.c.rule_id, issued_cards.c.suggestion_uuids)
                    .where(issued_cards.c.uuid == item.card)
                ).first()
                accepted = [s.id for s in item.acceptedSuggestions or ()]
                known_suggestions = set(json.loads(card.suggestion_uuids)) if card else set()
                unknown = [s for s in accepted if s not in known_suggestions]
                override = item.overrideReason
                reason = override.reason if override else None
                db.execute(feedback.insert().values(
                    service_id=service_id, card_uuid=item.card, known_card=1 if card else 0,
                    rule_id=card.rule_id if card else None, outcome=item.outcome,
                    outcome_timestamp=item.outcomeTimestamp,
                    accepted_suggestions=json.dumps(accepted) if accepted else None,
                    unknown_suggestions=json.dumps(unknown) if unknown else None,
                    override_system=reason.system if reason else None,
                    override_code=reason.code if reason else None,
                    override_display=reason.display if reason else None,
                    user_comment=override.userComment if override else None, received_at=received,
                ))
                results.append({"card": item.card, "knownCard": bool(card), "ruleId": card.rule_id if card else None,
                                "unknownSuggestions": unknown})
            if self.memory is not None:
                rule_ids = {r["card"]: r["ruleId"] for r in results if r["knownCard"]}
                if rule_ids:
                    memory_store.after_feedback(db, self.memory, self._latest_feedback(db, rule_ids), rule_ids, now)
        return results

    @staticmethod
    def _latest_feedback(db: Any, cards: Iterable[str]) -> dict[str, Any]:
        rows = db.execute(select(feedback).where(feedback.c.card_uuid.in_(sorted(set(cards)))))
        return latest_per_card(row._mapping for row in rows)

    def feedback_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(select(feedback).order_by(feedback.c.id))]

    def first_use_of_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record (iss, jti) until `expires_at`; False when it is already recorded and not yet expired.

        One atomic statement, so two gunicorn workers (or instances) racing on the same token
        cannot both win. A stale row (its token long expired) is taken over.
        """
        with self.engine.begin() as db:
            if now - self._jti_pruned_at >= JTI_PRUNE_INTERVAL_SECONDS:
                db.execute(jti_seen.delete().where(jti_seen.c.expires_at < float(now)))
                self._jti_pruned_at = now
            stale = jti_seen.c.expires_at < bindparam("now")
            claim = self._upsert(jti_seen, ["iss", "jti"], ["expires_at"], where=stale)
            # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg would report -1).
            row = {"iss": iss, "jti": jti, "expires_at": expires_at, "now": float(now)}
            return db.execute(claim.execution_options(preserve_rowcount=True), row).rowcount == 1

    def keep_basis(self, pages: list[tuple[str, bytes]], expires: datetime) -> None:
        """Keep each card's basis page (token, content) until `expires` (see store/basis.py)."""
        with self.engine.begin() as db:
            basis_store.keep(db, pages, expires, self.clock())

    def basis_page(self, token: str) -> tuple[bytes, datetime] | None:
        """A basis page's content and expiry while it lasts; None when it expired, never was, or the token is wrong."""
        with self.engine.connect() as db:
            return basis_store.read(db, token, self.clock())

    def writable(self) -> bool:
        try:
            with self.engine.begin() as db:
                db.execute(self._upsert(health, ["id"], ["checked_at"]), {"id": 1, "checked_at": now_text()})
            return True
        except SQLAlchemyError:
            return False
