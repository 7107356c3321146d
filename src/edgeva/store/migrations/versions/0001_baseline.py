"""Baseline: the runtime's and the evaluation's tables as edgeva 0.1 created them.

Databases made before migrations existed (``create_all``) already hold some or all of these
tables: each is created only where it is missing, so such a database is adopted as is.

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> dict[str, list]:
    f, i, s, t = sa.Float, sa.Integer, sa.String, sa.Text
    return {
        "runtime_runs": [
            sa.Column("id", s(64), primary_key=True), sa.Column("policy", s(64), nullable=False),
            sa.Column("config", t, nullable=False), sa.Column("started", f, nullable=False),
            sa.Column("finished", f), sa.Column("status", s(16), nullable=False),
        ],
        "runtime_cameras": [
            sa.Column("run_id", s(64), primary_key=True), sa.Column("camera", i, primary_key=True),
            sa.Column("source", t, nullable=False), sa.Column("start", i, nullable=False),
            sa.Column("step", i, nullable=False), sa.Column("width", i), sa.Column("height", i),
            sa.Column("frames_read", i, nullable=False), sa.Column("started", f, nullable=False),
            sa.Column("finished", f), sa.Column("status", s(16), nullable=False), sa.Column("evaluated", f),
        ],
        "runtime_frames": [
            sa.Column("run_id", s(64), primary_key=True), sa.Column("camera", i, primary_key=True),
            sa.Column("frame", i, primary_key=True), sa.Column("state", s(16), nullable=False),
            sa.Column("reason", t), sa.Column("where", s(64)), sa.Column("reuses", i),
            sa.Column("model_version", i), sa.Column("nbytes", i), sa.Column("scale", f), sa.Column("crf", i),
            sa.Column("t_capture", f, nullable=False), sa.Column("t_send", f), sa.Column("t_receive", f),
            sa.Column("t_start", f), sa.Column("t_end", f), sa.Column("t_done", f, nullable=False),
        ],
        "runtime_detections": [
            sa.Column("run_id", s(64), primary_key=True), sa.Column("camera", i, primary_key=True),
            sa.Column("frame", i, primary_key=True), sa.Column("kind", s(16), primary_key=True),
            sa.Column("idx", i, primary_key=True),
            *[sa.Column(name, f, nullable=False) for name in ("x1", "y1", "x2", "y2", "score")],
            sa.Column("class_id", i, nullable=False),
        ],
        "runtime_model_updates": [
            sa.Column("run_id", s(64), primary_key=True), sa.Column("node", s(64), primary_key=True),
            sa.Column("version", i, primary_key=True), sa.Column("frames", i, nullable=False),
            sa.Column("objects", i, nullable=False), sa.Column("epochs", i, nullable=False),
            *[sa.Column(name, f, nullable=False) for name in ("loss_before", "loss_after", "train_s", "swapped")],
        ],
        "eval_runs": [
            sa.Column("id", i, primary_key=True), sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model", s(64), nullable=False), sa.Column("selector", s(512)),
            sa.Column("target_f1", f, nullable=False), sa.Column("settings", sa.JSON, nullable=False),
        ],
        "eval_records": [
            sa.Column("id", i, primary_key=True),
            sa.Column("run_id", i, sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False),
            sa.Column("video", s(256), nullable=False), sa.Column("scheme", s(64), nullable=False),
            sa.Column("config", sa.JSON, nullable=False),
            *[sa.Column(name, f, nullable=False) for name in ("f1", "precision", "recall")],
            sa.Column("bytes", i, nullable=False), sa.Column("kbps", f, nullable=False),
            sa.Column("frames", i, nullable=False), sa.Column("sent_frames", i, nullable=False),
            *[sa.Column(name, f, nullable=False) for name in
              ("delay_mean_s", "delay_p95_s", "camera_ms_per_frame", "server_ms_per_frame")],
            sa.Column("best", sa.Boolean, nullable=False), sa.Column("reaches_target", sa.Boolean),
        ],
    }


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in _tables().items():  # in dependency order (eval_runs before eval_records)
        if name not in existing:
            op.create_table(name, *columns)
    indexes = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("eval_records")}
    if "ix_eval_records_run_id" not in indexes:
        op.create_index("ix_eval_records_run_id", "eval_records", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_records_run_id", "eval_records")
    for name in reversed(list(_tables())):
        op.drop_table(name)
