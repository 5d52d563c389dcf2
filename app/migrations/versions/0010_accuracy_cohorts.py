"""Monitoring reports gain the label maturity curve, accuracy per prediction cohort and the estimated accuracy.

``maturity``: the curve the report judged cohorts by (``app.reports.MaturityCurve``); ``cohorts``: per day, model
version and variant, its maturity and realised and estimated accuracy; ``estimated``: per version, the estimate over
the drift window. JSON documents of ``app.reports`` models, like ``drift`` and ``accuracy``; reports written before
keep NULL / empty lists.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE monitoring_reports
            ADD COLUMN maturity  jsonb,
            ADD COLUMN cohorts   jsonb NOT NULL DEFAULT '[]',
            ADD COLUMN estimated jsonb NOT NULL DEFAULT '[]';
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE monitoring_reports DROP COLUMN IF EXISTS maturity, DROP COLUMN IF EXISTS cohorts, "
               "DROP COLUMN IF EXISTS estimated")
