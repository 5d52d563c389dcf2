"""Lighter indexes on ``transactions``: every stored row paid for four B-trees, two of which nothing reads.

Every raw micro-batch inserts its rows into the primary key (the duplicate check), (customer_id, event_time),
(merchant_id, event_time) and (event_time). Nothing in riskray looks raw rows up by merchant (serving reads the
tiles), and the period scans of training, drift and the demo report read event-time ranges of rows that arrive
in event-time order: a BRIN index answers those from a few kilobytes and costs an insert almost nothing, where
the B-tree took a random page write per row. The (customer_id, event_time) index stays: it is the table's
documented access path (ARCHITECTURE.md) for looking up a card's history. Measured with
``benchmarks/streaming_benchmark.py --against``: see docs/benchmarks.md (streaming).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS transactions_merchant_time_idx;
        DROP INDEX IF EXISTS transactions_event_time_idx;
        CREATE INDEX transactions_event_time_brin ON transactions USING brin (event_time);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS transactions_event_time_brin;
        CREATE INDEX transactions_merchant_time_idx ON transactions (merchant_id, event_time);
        CREATE INDEX transactions_event_time_idx ON transactions (event_time);
        """
    )
