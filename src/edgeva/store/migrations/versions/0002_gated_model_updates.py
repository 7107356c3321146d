"""Gated model updates: whether the validation gate accepted an update, and the F1s it compared.

Continuous learning swaps a fine-tuned model in only when its F1 on the edge's validation
frames does not drop (``runtime/learning.py``); refused updates are recorded too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

def _columns() -> list[sa.Column]:
    return [
        # Rows written before the gate existed were all swapped in: accepted, no validation frames.
        sa.Column("accepted", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("f1_before", sa.Float, nullable=True),
        sa.Column("f1_after", sa.Float, nullable=True),
        sa.Column("validation_frames", sa.Integer, nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runtime_model_updates")}
    for column in _columns():
        if column.name not in existing:  # a database made by create_all already has them
            op.add_column("runtime_model_updates", column)


def downgrade() -> None:
    with op.batch_alter_table("runtime_model_updates") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
