"""The initial BSM schema: SEK/PEKs, purchase items and their keys, subscribers and their
subscriptions.

Revision ID: bsm0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "bsm0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bsm_keys",
        sa.Column("key_domain", sa.LargeBinary(3), nullable=False),
        sa.Column("key_id", sa.LargeBinary(4), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_domain", "key_id", name="pk_bsm_keys"),
    )
    op.create_table(
        "bsm_items",
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_bsm_items"),
    )
    op.create_table(
        "bsm_item_keys",
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("key_domain", sa.LargeBinary(3), nullable=False),
        sa.Column("key_id", sa.LargeBinary(4), nullable=False),
        sa.ForeignKeyConstraint(
            ["ref"], ["bsm_items.ref"], name="fk_bsm_item_keys_ref_bsm_items", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ref", "key_domain", "key_id", name="pk_bsm_item_keys"),
    )
    op.create_table(
        "bsm_subscribers",
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_bsm_subscribers"),
    )
    op.create_table(
        "bsm_subscriptions",
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"],
            ["bsm_subscribers.username"],
            name="fk_bsm_subscriptions_username_bsm_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ref"],
            ["bsm_items.ref"],
            name="fk_bsm_subscriptions_ref_bsm_items",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("username", "ref", name="pk_bsm_subscriptions"),
    )


def downgrade() -> None:
    for table in ("bsm_subscriptions", "bsm_subscribers", "bsm_item_keys", "bsm_items", "bsm_keys"):
        op.drop_table(table)
