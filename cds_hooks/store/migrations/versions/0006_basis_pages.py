"""Basis pages: each card's whole basis, sealed, for the short time its link lasts.

`basis_pages` holds, per card shown, the SHA-256 of its link token and the basis sealed with a key
derived from that token (store/basis.py), until `expires_at`. No column holds a patient identifier, and
nothing in it can be read without the link.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "basis_pages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
    )
    op.create_index("basis_pages_expiry", "basis_pages", ["expires_at"])


def downgrade() -> None:
    op.drop_table("basis_pages")
