"""Label events: the truth arrives after the transaction, on its own.

``labels`` keeps every label event once (``label_id``), the history of each transaction's labels included: the
label of a transaction as known at time t is its event reported last at or before t (``app.labels``). No foreign
key to ``transactions``: a label may arrive before its transaction is stored (another topic, another partition)
and is kept, not dropped. ``transactions.is_fraud`` becomes optional: a live transaction carries no label.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE transactions ALTER COLUMN is_fraud DROP NOT NULL;

        CREATE TABLE labels (
            label_id        uuid PRIMARY KEY,
            transaction_id  uuid NOT NULL,
            is_fraud        smallint NOT NULL CHECK (is_fraud IN (0, 1)),
            source          text NOT NULL,
            reported_at     timestamptz NOT NULL,
            reason_code     text,
            case_id         text,
            kafka_partition integer,
            kafka_offset    bigint,
            ingested_at     timestamptz NOT NULL DEFAULT now()
        );
        -- a transaction's label history, newest report first: "the label as known at t" is one index probe
        CREATE INDEX labels_transaction_reported_idx ON labels (transaction_id, reported_at DESC, label_id DESC);
        CREATE INDEX labels_reported_at_brin ON labels USING brin (reported_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS labels;
        DELETE FROM transactions WHERE is_fraud IS NULL;
        ALTER TABLE transactions ALTER COLUMN is_fraud SET NOT NULL;
        """
    )
