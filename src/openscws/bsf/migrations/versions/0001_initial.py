"""The initial BSF schema: subscribers (the HSS's part), pending challenges, bootstrapping
sessions (Ks per B-TID), NAFs allowed on Zn.

Revision ID: bsf0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "bsf0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bsf_subscribers",
        sa.Column("impi", sa.String(255), nullable=False),
        sa.Column("k", sa.LargeBinary(), nullable=False),
        sa.Column("opc", sa.LargeBinary(), nullable=False),
        sa.Column("amf", sa.LargeBinary(2), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("gba_type", sa.String(8), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("impi", name="pk_bsf_subscribers"),
    )
    op.create_table(
        "bsf_challenges",
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("impi", sa.String(255), nullable=False),
        sa.Column("rand", sa.LargeBinary(16), nullable=False),
        sa.Column("xres", sa.LargeBinary(), nullable=False),
        sa.Column("ks", sa.LargeBinary(), nullable=False),
        sa.Column("gba_type", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_bsf_challenges"),
    )
    op.create_index("ix_bsf_challenges_created_ms", "bsf_challenges", ["created_ms"])
    op.create_table(
        "bsf_sessions",
        sa.Column("btid", sa.String(255), nullable=False),
        sa.Column("impi", sa.String(255), nullable=False),
        sa.Column("rand", sa.LargeBinary(16), nullable=False),
        sa.Column("ks", sa.LargeBinary(), nullable=False),
        sa.Column("gba_type", sa.String(8), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("btid", name="pk_bsf_sessions"),
    )
    op.create_index("ix_bsf_sessions_expires_ms", "bsf_sessions", ["expires_ms"])
    op.create_table(
        "bsf_nafs",
        sa.Column("fqdn", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("fqdn", name="pk_bsf_nafs"),
    )


def downgrade() -> None:
    op.drop_table("bsf_nafs")
    op.drop_index("ix_bsf_sessions_expires_ms", "bsf_sessions")
    op.drop_table("bsf_sessions")
    op.drop_index("ix_bsf_challenges_created_ms", "bsf_challenges")
    op.drop_table("bsf_challenges")
    op.drop_table("bsf_subscribers")
