"""Feature store: transactions, customer and merchant window features, training features, predictions,
and the stream batch-commit ledger that makes Spark's foreachBatch writes idempotent.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE transactions (
            transaction_id  uuid PRIMARY KEY,
            customer_id     bigint NOT NULL CHECK (customer_id > 0),
            merchant_id     bigint NOT NULL CHECK (merchant_id > 0),
            amount          double precision NOT NULL CHECK (amount > 0),
            currency        char(3) NOT NULL,
            event_time      timestamptz NOT NULL,
            card_last_4     char(4) NOT NULL,
            is_fraud        smallint NOT NULL CHECK (is_fraud IN (0, 1)),
            country         char(2) NOT NULL,
            device_type     text NOT NULL,
            kafka_partition integer,
            kafka_offset    bigint,
            is_late         boolean NOT NULL DEFAULT false,
            ingested_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX transactions_customer_time_idx ON transactions (customer_id, event_time);
        CREATE INDEX transactions_merchant_time_idx ON transactions (merchant_id, event_time);
        CREATE INDEX transactions_event_time_idx ON transactions (event_time);

        -- 1-minute tiles per customer; amount_sum lets longer windows be exact sums over tiles.
        CREATE TABLE features (
            customer_id       bigint NOT NULL,
            window_start      timestamptz NOT NULL,
            window_end        timestamptz NOT NULL,
            transaction_count integer NOT NULL CHECK (transaction_count >= 0),
            amount_sum        double precision NOT NULL,
            avg_amount        double precision NOT NULL,
            max_amount        double precision NOT NULL,
            amount_std        double precision NOT NULL DEFAULT 0,
            fraud_count       integer NOT NULL DEFAULT 0,
            updated_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, window_start)
        );
        CREATE INDEX features_window_start_idx ON features (window_start);

        CREATE TABLE merchant_features (
            merchant_id       bigint NOT NULL,
            window_start      timestamptz NOT NULL,
            window_end        timestamptz NOT NULL,
            transaction_count integer NOT NULL CHECK (transaction_count >= 0),
            fraud_count       integer NOT NULL DEFAULT 0,
            updated_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (merchant_id, window_start)
        );
        CREATE INDEX merchant_features_window_start_idx ON merchant_features (window_start);

        -- Point-in-time features of each labelled transaction. Features are a JSON object keyed by the
        -- feature definitions of app/, so adding a feature needs no migration; feature_set names the version.
        CREATE TABLE training_features (
            transaction_id uuid PRIMARY KEY,
            customer_id    bigint NOT NULL,
            merchant_id    bigint NOT NULL,
            event_time     timestamptz NOT NULL,
            is_fraud       smallint NOT NULL CHECK (is_fraud IN (0, 1)),
            feature_set    text NOT NULL,
            features       jsonb NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX training_features_event_time_idx ON training_features (event_time);

        CREATE TABLE predictions (
            prediction_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transaction_id    uuid,
            customer_id       bigint NOT NULL,
            merchant_id       bigint,
            model_version     text NOT NULL,
            variant           text NOT NULL DEFAULT 'champion'
                              CHECK (variant IN ('champion', 'challenger', 'shadow')),
            fraud_probability double precision NOT NULL CHECK (fraud_probability BETWEEN 0 AND 1),
            is_fraud          smallint NOT NULL CHECK (is_fraud IN (0, 1)),
            latency_ms        double precision NOT NULL,
            features_degraded boolean NOT NULL DEFAULT false,
            predicted_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX predictions_predicted_at_idx ON predictions (predicted_at);
        CREATE INDEX predictions_transaction_idx ON predictions (transaction_id);
        CREATE INDEX predictions_model_version_idx ON predictions (model_version, predicted_at);

        -- One row per (streaming query, micro-batch) written in the same database transaction as the batch's
        -- rows: a replayed batch finds its row and changes nothing.
        CREATE TABLE stream_batch_commits (
            query_name   text NOT NULL,
            batch_id     bigint NOT NULL,
            row_counts   jsonb NOT NULL DEFAULT '{}'::jsonb,
            committed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (query_name, batch_id)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS stream_batch_commits, predictions, training_features, merchant_features, "
        "features, transactions"
    )
