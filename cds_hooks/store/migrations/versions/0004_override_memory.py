"""Override memory: which patient (as a keyed hash) a card was for, what is remembered, what was silenced.

- `card_patients`: for each card issued while memory is on, the HMAC standing for its patient, so that
  feedback (which names only the card) can be tied to the patient. Kept only as long as memory lasts.
- `override_memory`: one row per (patient key, rule) silenced until `expires_at`, with the card and the
  override that started it.
- `silenced_cards`: each card memory withheld, for the committee report; no patient key.

No column holds a patient identifier.

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_patients",
        sa.Column("card_uuid", sa.Text, primary_key=True),
        sa.Column("patient_key", sa.Text, nullable=False),
        sa.Column("issued_at", sa.Text, nullable=False),
    )
    op.create_index("card_patients_issued", "card_patients", ["issued_at"])
    op.create_table(
        "override_memory",
        sa.Column("patient_key", sa.Text, primary_key=True),
        sa.Column("rule_id", sa.Text, primary_key=True),
        sa.Column("card_uuid", sa.Text, nullable=False),
        sa.Column("override_system", sa.Text),
        sa.Column("override_code", sa.Text, nullable=False),
        sa.Column("remembered_at", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
    )
    op.create_index("override_memory_card", "override_memory", ["card_uuid"])
    op.create_table(
        "silenced_cards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("hook", sa.Text, nullable=False),
        sa.Column("hook_instance", sa.Text, nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("remembered_card", sa.Text, nullable=False),
        sa.Column("silenced_at", sa.Text, nullable=False),
        sa.Column("rules_version", sa.Text),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("silenced_cards", "override_memory", "card_patients"):
        op.drop_table(table)
