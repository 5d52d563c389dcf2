"""Each stream batch records the latest event time it saw, so the raw query's watermark (which flags late rows)
is its own and survives restarts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE stream_batch_commits ADD COLUMN max_event_time timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE stream_batch_commits DROP COLUMN max_event_time")
