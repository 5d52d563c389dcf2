"""Predictions gain the outcome they were answered with (approve | review | decline, ``app.decision``).

NULL for predictions answered before outcomes. A partial index on the reviews by time: /metrics counts the last
day's reviews against the team's capacity on every scrape, and a review queue reads them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE predictions
            ADD COLUMN outcome text CHECK (outcome IN ('approve', 'review', 'decline'));
        CREATE INDEX predictions_reviews_idx ON predictions (predicted_at) WHERE outcome = 'review';
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS predictions_reviews_idx; ALTER TABLE predictions DROP COLUMN IF EXISTS outcome")
