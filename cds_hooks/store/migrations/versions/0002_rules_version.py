"""Issued cards record the version of the rules that issued them (rules/governance.yaml).

Cards issued before this revision have no version (NULL); the committee report shows them apart.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issued_cards", sa.Column("rules_version", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("rules_version")
