"""Monitoring: the model inputs each prediction was answered with, and one row per drift/accuracy run.

``predictions`` gains the transaction's event time, the feature set of the answering model and its inputs as
answered (``numeric_inputs`` in ``app.model_inputs.NUMERIC_FEATURES`` order of that feature set, NaN for "no
history"; ``categorical_inputs`` in ``CATEGORICAL_FEATURES`` order). Logged rather than recomputed: drift must
see what the model was given, degraded answers and client-supplied window values included (the cost on the
serving path is measured in benchmarks/prediction_log_benchmark.py). ``real`` (4 bytes) is precise enough for
quantile bins and halves the row against ``double precision``. Older rows keep NULLs and are skipped by drift.

``monitoring_reports`` holds each `riskray drift` run: the window, the per-feature drift and the realised
accuracy per model version, as JSON documents of ``monitoring.report`` models; Serve's /metrics renders the
latest one as ``data_drift_score`` and ``model_accuracy``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE predictions
            ADD COLUMN event_time timestamptz,
            ADD COLUMN feature_set text,
            ADD COLUMN numeric_inputs real[],
            ADD COLUMN categorical_inputs text[];
        CREATE INDEX predictions_event_time_idx ON predictions (event_time);

        CREATE TABLE monitoring_reports (
            report_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            computed_at    timestamptz NOT NULL DEFAULT now(),
            as_of          timestamptz NOT NULL,
            window_start   timestamptz NOT NULL,
            window_end     timestamptz NOT NULL,
            accuracy_start timestamptz NOT NULL,
            accuracy_end   timestamptz NOT NULL,
            model_version  text,
            feature_set    text,
            predictions    bigint NOT NULL,
            status         text NOT NULL,
            retrain        boolean NOT NULL,
            reasons        text[] NOT NULL,
            drift          jsonb NOT NULL,
            accuracy       jsonb NOT NULL
        );
        CREATE INDEX monitoring_reports_as_of_idx ON monitoring_reports (as_of);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS monitoring_reports;
        DROP INDEX IF EXISTS predictions_event_time_idx;
        ALTER TABLE predictions DROP COLUMN IF EXISTS event_time, DROP COLUMN IF EXISTS feature_set,
            DROP COLUMN IF EXISTS numeric_inputs, DROP COLUMN IF EXISTS categorical_inputs;
        """
    )
