"""Override memory (against alert fatigue): after a clinician overrides a card for a reason the rules mark
durable ("conservative care completed outside this record", "specialist already managing"), the same
rule stays silent for the same patient for a configured number of days.

The patient is stored only as an HMAC-SHA256 of the caller's identity and the patient id, keyed with a
deployment secret: without the secret the stored value cannot be tied back to a patient, and the raw id
is never written. A card's patient key is kept only as long as memory lasts (feedback names the card,
not the patient). Whether a card's feedback starts, keeps or ends a memory follows its latest feedback
(`resolution.py`): an override later withdrawn by an acceptance, or replaced by a non-durable reason,
ends it. Every function runs inside the caller's transaction (`repository.Store`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Index, Integer, MetaData, Table, Text, select

from cds_hooks.store.resolution import stamp

# These tables only describe the schema for queries; migration 0004 creates them.
metadata = MetaData()
card_patients = Table(
    "card_patients", metadata,
    Column("card_uuid", Text, primary_key=True),
    Column("patient_key", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Index("card_patients_issued", "issued_at"),
)
override_memory = Table(
    "override_memory", metadata,
    Column("patient_key", Text, primary_key=True),
    Column("rule_id", Text, primary_key=True),
    Column("card_uuid", Text, nullable=False),
    Column("override_system", Text),
    Column("override_code", Text, nullable=False),
    Column("remembered_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Index("override_memory_card", "card_uuid"),
)
silenced_cards = Table(
    "silenced_cards", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Text, nullable=False),
    Column("service_id", Text, nullable=False),
    Column("hook", Text, nullable=False),
    Column("hook_instance", Text, nullable=False),
    Column("profile", Text, nullable=False),
    Column("remembered_card", Text, nullable=False),
    Column("silenced_at", Text, nullable=False),
    Column("rules_version", Text),
    sqlite_autoincrement=True,
)


def subject(patient_id: str, issuer: str | None = None, tenant: str | None = None) -> str:
    """Who the patient is: ids are unique only within one EHR, so the authenticated client and tenant
    (when authentication is on) are part of it."""
    return "\x1f".join((issuer or "", tenant or "", patient_id))


@dataclass(frozen=True)
class MemoryPolicy:
    """What override memory needs: the key, how long, and which override reasons start it."""

    secret: str
    days: int
    durable: frozenset[str]  # override reason codes (rules/cards.yaml durable_override_reasons)
    reason_system: str  # the rules' override reason system: the same code in another system is not ours

    def __repr__(self) -> str:  # never the secret
        return f"MemoryPolicy(days={self.days}, durable={sorted(self.durable)})"

    def patient_key(self, subject: str) -> str:
        return hmac.new(self.secret.encode(), subject.encode(), hashlib.sha256).hexdigest()

    def is_durable(self, system: str | None, code: str | None) -> bool:
        return code in self.durable and system in (None, self.reason_system)


def remember_patient(db: Connection, policy: MemoryPolicy, card_uuids: list[str], subject: str,
                     now: datetime) -> None:
    """Tie cards just issued to their patient's key, so that feedback on them can start a memory."""
    if card_uuids:
        key = policy.patient_key(subject)
        db.execute(card_patients.insert(),
                   [{"card_uuid": uuid, "patient_key": key, "issued_at": stamp(now)} for uuid in card_uuids])


def recall(db: Connection, policy: MemoryPolicy, subject: str, rule_ids: Iterable[str],
           now: datetime) -> dict[str, str]:
    """The rules silenced for this patient now, each with the overridden card that silenced it."""
    rows = db.execute(
        select(override_memory.c.rule_id, override_memory.c.card_uuid).where(
            override_memory.c.patient_key == policy.patient_key(subject),
            override_memory.c.rule_id.in_(sorted(set(rule_ids))),
            override_memory.c.expires_at > stamp(now),
        )
    ).all()
    return {rule: card for rule, card in rows}


def record_silenced(db: Connection, rows: list[dict[str, str]], now: datetime) -> None:
    """Cards memory withheld (rule_id, service_id, hook, hook_instance, profile, remembered_card)."""
    if rows:
        db.execute(silenced_cards.insert(), [{**row, "silenced_at": stamp(now)} for row in rows])


def after_feedback(db: Connection, policy: MemoryPolicy, latest: Mapping[str, Mapping[str, Any]],
                   rule_ids: Mapping[str, str], now: datetime) -> None:
    """Start, keep or end each card's memory from its latest feedback (`latest`, by card), once stored.

    `rule_ids` names the rule of each card this service issued."""
    keys = dict(db.execute(
        select(card_patients.c.card_uuid, card_patients.c.patient_key)
        .where(card_patients.c.card_uuid.in_(sorted(latest)))
    ).all())
    for card, row in latest.items():
        starts = row["outcome"] == "overridden" and policy.is_durable(row["override_system"], row["override_code"])
        if not starts or card not in keys or card not in rule_ids:
            db.execute(override_memory.delete().where(override_memory.c.card_uuid == card))
            continue
        where = (override_memory.c.patient_key == keys[card], override_memory.c.rule_id == rule_ids[card])
        held = db.execute(select(override_memory.c.card_uuid, override_memory.c.override_code).where(*where)).first()
        if held is not None and (held.card_uuid, held.override_code) == (card, row["override_code"]):
            continue  # the same override posted again: its memory keeps its dates
        values = {"card_uuid": card, "override_system": row["override_system"], "override_code": row["override_code"],
                  "remembered_at": stamp(now), "expires_at": stamp(now + timedelta(days=policy.days))}
        if held is None:
            db.execute(override_memory.insert().values(patient_key=keys[card], rule_id=rule_ids[card], **values))
        else:
            db.execute(override_memory.update().where(*where).values(**values))


def prune(db: Connection, policy: MemoryPolicy, now: datetime) -> None:
    """Forget expired memories, and the patient keys of cards too old for feedback to start one worth having."""
    db.execute(override_memory.delete().where(override_memory.c.expires_at <= stamp(now)))
    db.execute(card_patients.delete().where(card_patients.c.issued_at <= stamp(now - timedelta(days=policy.days))))
