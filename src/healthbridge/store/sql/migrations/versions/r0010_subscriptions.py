"""Subscription notifications: ``subscription_state``, ``subscription_delivery`` and
``subscription_cursor``, the durable delivery queue with per-subscription event numbers.

Event numbers follow the Subscriptions Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/). See the tables in
:mod:`healthbridge.store.sql.tables` and :mod:`healthbridge.store.subscriptions`.

Revision ID: r0010
Revises: r0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0010"
down_revision: str | None = "r0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_subscription_delivery_subscription_id_event_number", ["subscription_id", "event_number"]),
    ("ix_subscription_delivery_outbox_seq_subscription_id", ["outbox_seq", "subscription_id"]),
)
_HEAD = "ix_subscription_delivery_subscription_id_state_event_number"


def _key_text() -> sa.types.TypeEngine[str]:
    """Keys compare by code point on both databases (as ``tables.KEY_TEXT``)."""
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _big(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _text(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "subscription_state",
        sa.Column("subscription_id", _key_text(), nullable=False),
        _text("status"),
        _big("events_since_start"),
        _text("error", nullable=True),
        _big("failures"),
        _big("last_delivered"),
        _big("next_attempt", nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", name="pk_subscription_state"),
    )
    op.create_index(
        "ix_subscription_state_status_next_attempt",
        "subscription_state",
        ["status", "next_attempt"],
    )
    op.create_table(
        "subscription_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscription_id", _key_text(), nullable=False),
        _big("event_number"),
        _big("outbox_seq"),
        _text("focus_type"),
        _text("focus_id"),
        _big("focus_version"),
        _text("extra"),
        _big("recorded"),
        _text("state"),
        _big("attempts"),
        _big("due"),
        _text("owner", nullable=True),
        _big("lease_until", nullable=True),
        _text("error", nullable=True),
        _big("delivered", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_delivery"),
        sqlite_autoincrement=True,
    )
    for name, columns in _INDEXES:
        op.create_index(name, "subscription_delivery", columns, unique=True)
    op.create_index(_HEAD, "subscription_delivery", ["subscription_id", "state", "event_number"])
    op.create_table(
        "subscription_cursor",
        sa.Column("name", _key_text(), nullable=False),
        _big("after_seq"),
        sa.PrimaryKeyConstraint("name", name="pk_subscription_cursor"),
    )


def downgrade() -> None:
    op.drop_table("subscription_cursor")
    op.drop_index(_HEAD, table_name="subscription_delivery")
    for name, _ in _INDEXES:
        op.drop_index(name, table_name="subscription_delivery")
    op.drop_table("subscription_delivery")
    op.drop_index("ix_subscription_state_status_next_attempt", table_name="subscription_state")
    op.drop_table("subscription_state")
