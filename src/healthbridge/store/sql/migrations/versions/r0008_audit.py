"""The audit trail: ``outbox.actor`` and the hash-chained ``audit_event`` log with its head.

Every committed change's outbox row now names who made it (a small JSON, see
:mod:`healthbridge.store.actor`), so that its AuditEvent (IHE BALP,
https://hl7.org/fhir/R4/auditevent.html) can be built from the outbox after a crash. See
:data:`healthbridge.store.sql.tables.audit_event` and :mod:`healthbridge.store.audit`.

Revision ID: r0008
Revises: r0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0008"
down_revision: str | None = "r0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_audit_event_patient_recorded": ["patient", "recorded"],
    "ix_audit_event_agent_recorded": ["agent", "recorded"],
    "ix_audit_event_type_recorded": ["type", "recorded"],
    "ix_audit_event_recorded": ["recorded"],
}


def upgrade() -> None:
    op.add_column("outbox", sa.Column("actor", sa.Text(), nullable=True))
    op.create_table(
        "audit_event",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subtype", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("patient", sa.Text(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("source_seq", sa.BigInteger(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("chain", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_source_seq", "audit_event", ["source_seq"], unique=True)
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_event", columns)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    for name in _INDEXES:
        op.drop_index(name, table_name="audit_event")
    op.drop_index("ix_audit_event_source_seq", table_name="audit_event")
    op.drop_table("audit_event")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("actor")
