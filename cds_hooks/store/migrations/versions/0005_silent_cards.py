"""Silent mode: issued cards remember whether they were shown or only recorded.

A service in silent mode (`[services.<id>] mode = "silent"`) evaluates every call and records the cards
it would have shown, answering `{"cards": []}`. Rows written before this revision were all shown.

Revision ID: 0005
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(sa.Column("silent", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("silent")
