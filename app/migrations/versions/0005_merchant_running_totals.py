"""Merchant tiles carry running totals, so a merchant window is two index probes, not a scan of its tiles.

A busy merchant has a tile every minute: its 30-day window plus the label delay is ~50,000 tiles, and summing
them per request made the read grow with the merchant's traffic. Each tile now also holds ``count_through`` and
``fraud_through``: the merchant's transactions (frauds) in all its tiles up to and including this one. The sum
over tiles in [a, b] is ``count_through`` of the last tile at or before b minus ``count_through -
transaction_count`` of the first tile at or after a (``app.feature_store``).

The totals are kept by the table itself, whoever writes it: after each INSERT or UPDATE statement, a trigger
recomputes them for every merchant the statement touched, from its earliest touched tile on. The stream's
watermark keeps that to the last minute or two of tiles. Deleting old tiles needs no recompute: the later tiles'
totals still include them, and only differences between tiles are read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE merchant_features ADD COLUMN count_through bigint NOT NULL DEFAULT 0,
                                      ADD COLUMN fraud_through bigint NOT NULL DEFAULT 0;
        UPDATE merchant_features t SET count_through = r.count_through, fraud_through = r.fraud_through
        FROM (SELECT merchant_id, window_start,
                     sum(transaction_count) OVER w AS count_through, sum(fraud_count) OVER w AS fraud_through
              FROM merchant_features WINDOW w AS (PARTITION BY merchant_id ORDER BY window_start)) r
        WHERE t.merchant_id = r.merchant_id AND t.window_start = r.window_start;

        CREATE FUNCTION merchant_running_totals() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF pg_trigger_depth() > 1 THEN  -- the recompute's own UPDATE
                RETURN NULL;
            END IF;
            WITH changed AS (
                SELECT merchant_id, min(window_start) AS since FROM changed_tiles GROUP BY merchant_id
            ), recomputed AS (
                SELECT mf.merchant_id, mf.window_start,
                       coalesce(b.count_through, 0) + sum(mf.transaction_count) OVER w AS count_through,
                       coalesce(b.fraud_through, 0) + sum(mf.fraud_count) OVER w AS fraud_through
                FROM changed c
                JOIN merchant_features mf ON mf.merchant_id = c.merchant_id AND mf.window_start >= c.since
                LEFT JOIN LATERAL (
                    SELECT p.count_through, p.fraud_through FROM merchant_features p
                    WHERE p.merchant_id = c.merchant_id AND p.window_start < c.since
                    ORDER BY p.window_start DESC LIMIT 1
                ) b ON true
                WINDOW w AS (PARTITION BY mf.merchant_id ORDER BY mf.window_start)
            )
            UPDATE merchant_features t SET count_through = r.count_through, fraud_through = r.fraud_through
            FROM recomputed r
            WHERE t.merchant_id = r.merchant_id AND t.window_start = r.window_start
              AND (t.count_through, t.fraud_through) IS DISTINCT FROM (r.count_through, r.fraud_through);
            RETURN NULL;
        END
        $$;

        -- a statement trigger with a transition table takes one event: one trigger each
        CREATE TRIGGER merchant_running_totals_insert AFTER INSERT ON merchant_features
            REFERENCING NEW TABLE AS changed_tiles FOR EACH STATEMENT EXECUTE FUNCTION merchant_running_totals();
        CREATE TRIGGER merchant_running_totals_update AFTER UPDATE ON merchant_features
            REFERENCING NEW TABLE AS changed_tiles FOR EACH STATEMENT EXECUTE FUNCTION merchant_running_totals();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER merchant_running_totals_insert ON merchant_features;
        DROP TRIGGER merchant_running_totals_update ON merchant_features;
        DROP FUNCTION merchant_running_totals();
        ALTER TABLE merchant_features DROP COLUMN count_through, DROP COLUMN fraud_through;
        """
    )
