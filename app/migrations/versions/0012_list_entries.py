"""Allow and deny lists (``app.lists``): one row per entry, never deleted (removing stamps removed_at), so the
lists as they stood at any time can be replayed. One live entry per entity (a partial unique index).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE list_entries (
            entry_id    bigserial PRIMARY KEY,
            list        text NOT NULL CHECK (list IN ('allow', 'deny')),
            entity      text NOT NULL CHECK (entity IN ('customer', 'merchant')),
            entity_id   bigint NOT NULL CHECK (entity_id > 0),
            reason      text NOT NULL CHECK (length(btrim(reason)) > 0),
            added_by    text NOT NULL,
            added_at    timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz,
            removed_at  timestamptz,
            removed_by  text,
            CHECK (expires_at IS NULL OR expires_at > added_at)
        );
        CREATE UNIQUE INDEX list_entries_live_idx ON list_entries (entity, entity_id) WHERE removed_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS list_entries")
