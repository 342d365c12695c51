"""(R-)UIM / CSIM subscribers by NAI with their pre-provisioned RK.

Revision ID: bsm0002
Revises: bsm0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "bsm0002"
down_revision: str | None = "bsm0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bsm_rk_subscribers",
        sa.Column("nai", sa.String(255), nullable=False),
        sa.Column("rk", sa.LargeBinary(), nullable=False),
        sa.Column("rand", sa.LargeBinary(), nullable=False),
        sa.Column("derivation", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nai", name="pk_bsm_rk_subscribers"),
    )


def downgrade() -> None:
    op.drop_table("bsm_rk_subscribers")
