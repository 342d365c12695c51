"""A device's MSISDN: where the server's Package #0 (OMA-TS-DM_Notification §6) goes by SMS.

Revision ID: dm0002
Revises: dm0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "dm0002"
down_revision: str | None = "dm0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("dm_devices") as batch:
        batch.add_column(sa.Column("msisdn", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dm_devices") as batch:
        batch.drop_column("msisdn")
