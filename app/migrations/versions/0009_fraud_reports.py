"""A merchant's fraud reports, by the time each was reported.

``fraud_reports``: per transaction, its first report as fraud (a label event, or the label inside its row the
label delay after it) and the merchant it counts for (NULL while the transaction is not stored: it is counted
when it arrives). ``merchant_fraud_reports``: 1-minute tiles of those reports per merchant, with running totals
(``fraud_reports_through``, kept by the table's triggers exactly as migration 0005 keeps the stream's tiles', by
its function) so a window is two index probes. Both are written by the stream's writers under one advisory lock
(streaming.store_writer.record_fraud_reports), never by Spark's aggregation, so a report that arrives before or
after its transaction is counted once either way.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

from alembic import op


def _migration_0005():  # type: ignore[no-untyped-def]
    """Migration 0005, loaded from its file as Alembic loads migrations: its (frozen) running-totals trigger."""
    spec = importlib.util.spec_from_file_location("riskray_migration_0005",
                                                  Path(__file__).with_name("0005_tile_running_totals.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNING_TOTALS_SQL = _migration_0005()._running_totals(
    "merchant_fraud_reports", "merchant_id", {"fraud_reports_through": ("bigint", "fraud_reports")})

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fraud_reports (
            transaction_id uuid PRIMARY KEY,
            merchant_id    bigint,
            reported_at    timestamptz NOT NULL
        );
        CREATE INDEX fraud_reports_pending_idx ON fraud_reports (transaction_id) WHERE merchant_id IS NULL;
        CREATE INDEX fraud_reports_reported_at_idx ON fraud_reports (reported_at);

        CREATE TABLE merchant_fraud_reports (
            merchant_id   bigint NOT NULL,
            window_start  timestamptz NOT NULL,
            fraud_reports integer NOT NULL DEFAULT 0,
            PRIMARY KEY (merchant_id, window_start)
        );
        """
    )
    op.execute(RUNNING_TOTALS_SQL)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS merchant_fraud_reports, fraud_reports; "
               "DROP FUNCTION IF EXISTS merchant_fraud_reports_running_totals()")
