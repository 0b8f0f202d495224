"""Basis pages: each card's whole basis, kept sealed for a short time behind a link only the EHR received.

The link's token (256 random bits) is never stored. The row is found by a hash of it, and its content is
sealed with AES-256-GCM under a key derived from it (HKDF-SHA256), the row's id bound in as associated
data. So neither the database nor a backup of it can be read, or turned into a link, without the card
that carried the link; and the rows go once they expire (pruned on every write). The content is a
card's basis (diagnoses, dates, counts, an age in years), never a patient identifier.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, Connection, Index, MetaData, Table, Text, select

from cds_hooks.store.resolution import instant, stamp

# This table only describes the schema for queries; migration 0006 creates it.
metadata = MetaData()
basis_pages = Table(
    "basis_pages", metadata,
    Column("id", Text, primary_key=True),  # SHA-256 of the token, hex
    Column("sealed", Text, nullable=False),  # base64: 12-byte nonce, then AES-GCM ciphertext and tag
    Column("expires_at", Text, nullable=False),
    Index("basis_pages_expiry", "expires_at"),
)
TOKEN_BYTES = 32
_ID_CONTEXT = b"lumbar-cds basis page id\x00"
_KEY_CONTEXT = b"lumbar-cds basis page key"


def new_token() -> str:
    """A fresh link token: 256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def page_id(token: str) -> str:
    return hashlib.sha256(_ID_CONTEXT + token.encode()).hexdigest()


def _key(token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_CONTEXT).derive(token.encode())


def seal(token: str, content: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(_key(token)).encrypt(nonce, content, page_id(token).encode())).decode()


def unseal(token: str, sealed: str) -> bytes | None:
    """The content, or None when the token does not open it."""
    try:
        raw = base64.b64decode(sealed)
        return AESGCM(_key(token)).decrypt(raw[:12], raw[12:], page_id(token).encode())
    except (InvalidTag, ValueError):
        return None


def keep(db: Connection, pages: list[tuple[str, bytes]], expires: datetime, now: datetime) -> None:
    """Seal and store each (token, content) until `expires`; forget every expired page."""
    db.execute(basis_pages.delete().where(basis_pages.c.expires_at <= stamp(now)))
    if pages:
        db.execute(basis_pages.insert(), [{"id": page_id(token), "sealed": seal(token, content),
                                           "expires_at": stamp(expires)} for token, content in pages])


def read(db: Connection, token: str, now: datetime) -> tuple[bytes, datetime] | None:
    """The page's content and its expiry, while it lasts."""
    row = db.execute(select(basis_pages.c.sealed, basis_pages.c.expires_at).where(
        basis_pages.c.id == page_id(token), basis_pages.c.expires_at > stamp(now))).first()
    if row is None:
        return None
    content, expires = unseal(token, row.sealed), instant(row.expires_at)
    return None if content is None or expires is None else (content, expires)
