"""The catalogue's services (by globalServiceID) and which purchase items bundle them.

Revision ID: bsm0003
Revises: bsm0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "bsm0003"
down_revision: str | None = "bsm0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bsm_services",
        sa.Column("service_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", name="pk_bsm_services"),
    )
    op.create_table(
        "bsm_item_services",
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("service_id", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["ref"],
            ["bsm_items.ref"],
            name="fk_bsm_item_services_ref_bsm_items",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["bsm_services.service_id"],
            name="fk_bsm_item_services_service_id_bsm_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ref", "service_id", name="pk_bsm_item_services"),
    )


def downgrade() -> None:
    op.drop_table("bsm_item_services")
    op.drop_table("bsm_services")
