"""The HTTP Digest (nonce, nc) pairs the DM server accepted (RFC 7616 §3.4, §5.5), one record
for every server process sharing the database, so a request accepted at one is refused
when replayed to another. Rows go once their nonce has expired (by issue time, indexed).

Revision ID: dm0003
Revises: dm0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "dm0003"
down_revision: str | None = "dm0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dm_digest_nonces",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("nc", sa.String(8), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", "nc", name="pk_dm_digest_nonces"),
    )
    op.create_index("ix_dm_digest_nonces_issued_ms", "dm_digest_nonces", ["issued_ms"])


def downgrade() -> None:
    op.drop_index("ix_dm_digest_nonces_issued_ms", table_name="dm_digest_nonces")
    op.drop_table("dm_digest_nonces")
