"""Tiles remember the event time of their newest transaction: how stale a feature is, and how fresh the
stream keeps it (updated_at - last_event_at), can then be read from the store itself.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE features ADD COLUMN last_event_at timestamptz")
    op.execute("ALTER TABLE merchant_features ADD COLUMN last_event_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE features DROP COLUMN last_event_at")
    op.execute("ALTER TABLE merchant_features DROP COLUMN last_event_at")
