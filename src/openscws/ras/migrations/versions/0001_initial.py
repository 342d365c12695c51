"""The initial RAS schema: cards, content versions, campaigns, jobs, session logs.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Migrations spell their types out instead of importing models.py, which moves on.
_TS = sa.DateTime(timezone=True)
_ACTIVE = sa.text("state IN ('triggered', 'in_session')")


def upgrade() -> None:
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("iccid", sa.String(20), nullable=False),
        sa.Column("msisdn", sa.String(24), nullable=True),
        sa.Column("agent_id", sa.String(255), nullable=False),
        sa.Column("psk_identity", sa.String(255), nullable=False),
        sa.Column("psk_key", sa.LargeBinary(), nullable=False),
        sa.Column("ota_tar", sa.String(6), nullable=False),
        sa.Column("ota_kic", sa.Integer(), nullable=False),
        sa.Column("ota_kid", sa.Integer(), nullable=False),
        sa.Column("ota_kic_key", sa.LargeBinary(), nullable=False),
        sa.Column("ota_kid_key", sa.LargeBinary(), nullable=False),
        sa.Column("ota_counter", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cards"),
        sa.UniqueConstraint("iccid", name="uq_cards_iccid"),
        sa.UniqueConstraint("psk_identity", name="uq_cards_psk_identity"),
    )
    op.create_table(
        "content_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("content_encoding", sa.String(64), nullable=True),
        sa.Column("content_language", sa.String(64), nullable=True),
        sa.Column("realm", sa.String(255), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_content_versions"),
        sa.UniqueConstraint("path", "version", name="uq_content_versions_path_version"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.CheckConstraint("state IN ('active', 'cancelled')", name="ck_campaigns_state"),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("session_starts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'triggered', 'in_session', 'done', 'failed')",
            name="ck_jobs_state",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_jobs_card_id_cards", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_jobs_campaign_id_campaigns",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_state_next_attempt_at", "jobs", ["state", "next_attempt_at"])
    op.create_index("ix_jobs_state_lease_until", "jobs", ["state", "lease_until"])
    op.create_index("ix_jobs_card_id_state_created_at", "jobs", ["card_id", "state", "created_at"])
    op.create_index("ix_jobs_campaign_id_state", "jobs", ["campaign_id", "state"])
    op.create_index(
        "uq_jobs_one_active_per_card",
        "jobs",
        ["card_id"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_table(
        "session_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_session_logs_card_id_cards", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_session_logs_job_id_jobs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_session_logs"),
    )
    op.create_index("ix_session_logs_card_id_started_at", "session_logs", ["card_id", "started_at"])


def downgrade() -> None:
    op.drop_table("session_logs")
    op.drop_table("jobs")
    op.drop_table("campaigns")
    op.drop_table("content_versions")
    op.drop_table("cards")
