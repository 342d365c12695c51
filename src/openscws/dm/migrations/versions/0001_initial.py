"""The initial DM server schema: devices (their DM account and transport credentials) and
management jobs with their results.

Revision ID: dm0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "dm0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dm_devices",
        sa.Column("dev_id", sa.String(255), nullable=False),
        sa.Column("app_auth", sa.String(32), nullable=False),
        sa.Column("app_username", sa.String(255), nullable=False),
        sa.Column("app_secret", sa.LargeBinary(), nullable=False),
        sa.Column("app_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("server_id", sa.String(255), nullable=False),
        sa.Column("server_auth", sa.String(32), nullable=True),
        sa.Column("server_secret", sa.LargeBinary(), nullable=False),
        sa.Column("server_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("http_auth", sa.String(16), nullable=False),
        sa.Column("http_username", sa.String(255), nullable=True),
        sa.Column("http_secret", sa.LargeBinary(), nullable=True),
        sa.Column("cert_sha256", sa.String(64), nullable=True),
        sa.Column("psk_identity", sa.String(255), nullable=True),
        sa.Column("psk_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dev_id", name="pk_dm_devices"),
        sa.UniqueConstraint("cert_sha256", name="uq_dm_devices_cert_sha256"),
        sa.UniqueConstraint("psk_identity", name="uq_dm_devices_psk_identity"),
    )
    op.create_table(
        "dm_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dev_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("commands", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dev_id"],
            ["dm_devices.dev_id"],
            name="fk_dm_jobs_dev_id_dm_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dm_jobs"),
    )
    op.create_index("ix_dm_jobs_dev_id_state", "dm_jobs", ["dev_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_dm_jobs_dev_id_state", table_name="dm_jobs")
    op.drop_table("dm_jobs")
    op.drop_table("dm_devices")
