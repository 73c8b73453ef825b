"""Full-text index for ``_text`` and ``_content`` (https://hl7.org/fhir/R4/search.html#text).

SQLite gets an FTS5 table, PostgreSQL a table of ``tsvector`` columns with GIN indexes (see
:mod:`healthbridge.store.sql.text_index`); live resources stored before this revision are
indexed here.

Revision ID: r0003
Revises: r0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0003"
down_revision: str | None = "r0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    from healthbridge.fhir import jsonformat
    from healthbridge.fhir.search.text import content_text, narrative_text
    from healthbridge.store.sql import text_index

    bind = op.get_bind()
    for statement in text_index.ddl(bind.dialect.name):
        op.execute(statement)
    if bind.dialect.name == "sqlite":
        insert = sa.text(
            "INSERT INTO search_text (rowid, narrative, content) "
            "VALUES (:rkey, :narrative, :content)"
        )
    else:
        insert = sa.text(
            "INSERT INTO search_text (rkey, narrative, content) VALUES "
            "(:rkey, to_tsvector('simple', :narrative), to_tsvector('simple', :content))"
        )
    first = sa.text(
        "SELECT rkey, content FROM resource WHERE NOT deleted ORDER BY rkey LIMIT :limit"
    )
    later = sa.text(
        "SELECT rkey, content FROM resource WHERE NOT deleted AND rkey > :after "
        "ORDER BY rkey LIMIT :limit"
    )
    after: int | None = None
    while True:
        if after is None:
            rows = bind.execute(first, {"limit": BATCH}).all()
        else:
            rows = bind.execute(later, {"after": after, "limit": BATCH}).all()
        if not rows:
            return
        texts = []
        for rkey, content in rows:
            resource = jsonformat.loads(bytes(content))
            texts.append(
                {
                    "rkey": rkey,
                    "narrative": narrative_text(resource),
                    "content": content_text(resource),
                }
            )
        bind.execute(insert, texts)
        after = rows[-1][0]


def downgrade() -> None:
    op.execute("DROP TABLE search_text")
