"""Initial schema: issued cards, feedback, health, used JWT ids.

Databases written by the pre-Alembic sqlite3 store already hold these tables
with this exact layout; they are adopted rather than created again.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "issued_cards" not in existing:
        op.create_table(
            "issued_cards",
            sa.Column("uuid", sa.Text, primary_key=True),
            sa.Column("rule_id", sa.Text, nullable=False),
            sa.Column("indicator", sa.Text, nullable=False),
            sa.Column("service_id", sa.Text, nullable=False),
            sa.Column("hook", sa.Text, nullable=False),
            sa.Column("hook_instance", sa.Text, nullable=False),
            sa.Column("profile", sa.Text, nullable=False),
            sa.Column("suggestion_uuids", sa.Text, nullable=False),
            sa.Column("issued_at", sa.Text, nullable=False),
        )
    if "feedback" not in existing:
        op.create_table(
            "feedback",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("service_id", sa.Text, nullable=False),
            sa.Column("card_uuid", sa.Text, nullable=False),
            sa.Column("known_card", sa.Integer, nullable=False),
            sa.Column("rule_id", sa.Text),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("outcome_timestamp", sa.Text, nullable=False),
            sa.Column("accepted_suggestions", sa.Text),
            sa.Column("unknown_suggestions", sa.Text),
            sa.Column("override_system", sa.Text),
            sa.Column("override_code", sa.Text),
            sa.Column("override_display", sa.Text),
            sa.Column("user_comment", sa.Text),
            sa.Column("received_at", sa.Text, nullable=False),
            sqlite_autoincrement=True,
        )
        op.create_index("feedback_card", "feedback", ["card_uuid"])
    if "health" not in existing:
        op.create_table(
            "health",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("checked_at", sa.Text, nullable=False),
        )
    if "jti_seen" not in existing:
        op.create_table(
            "jti_seen",
            sa.Column("iss", sa.Text, primary_key=True),
            sa.Column("jti", sa.Text, primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=False),
        )


def downgrade() -> None:
    for table in ("jti_seen", "health", "feedback", "issued_cards"):
        op.drop_table(table)
