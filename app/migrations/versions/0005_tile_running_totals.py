"""Tiles carry running totals, so a window is two index probes, not a scan of the entity's tiles.

A busy merchant has a tile every minute: its 30-day window plus the label delay is ~50,000 tiles, and summing
them per request made the read grow with the merchant's traffic; a card paying twice a day still has ~60 tiles
in 30 days. Each tile now also holds the entity's totals over all its tiles up to and including this one
(``count_through``; ``amount_through`` for cards, ``fraud_through`` for merchants). The sum over the tiles in
[a, b] is the total through the last tile at or before b minus the total before the first tile at or after a
(``app.feature_store``).

The totals are kept by the tables themselves, whoever writes them: after each INSERT or UPDATE statement a
trigger recomputes them for every entity the statement touched, from its earliest touched tile on. The stream's
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

# table: (entity key, {running total: (type, the tile column it adds up)}); frozen here, as migrations are
RUNNING_TOTALS = {
    "features": ("customer_id", {"count_through": ("bigint", "transaction_count"),
                                 "amount_through": ("double precision", "amount_sum")}),
    "merchant_features": ("merchant_id", {"count_through": ("bigint", "transaction_count"),
                                          "fraud_through": ("bigint", "fraud_count")}),
}


def _running_totals(table: str, key: str, totals: dict[str, tuple[str, str]]) -> str:
    columns = ", ".join(f"ADD COLUMN {total} {kind} NOT NULL DEFAULT 0" for total, (kind, _) in totals.items())
    sums = ", ".join(f"sum({source}) OVER w AS {total}" for total, (_, source) in totals.items())
    based = ", ".join(f"coalesce(b.{total}, 0) + sum(t.{source}) OVER w AS {total}"
                      for total, (_, source) in totals.items())
    assign = ", ".join(f"{total} = r.{total}" for total in totals)
    listed = ", ".join(totals)
    old, new = ", ".join(f"t.{total}" for total in totals), ", ".join(f"r.{total}" for total in totals)
    function = f"{table}_running_totals"
    return f"""
        ALTER TABLE {table} {columns};
        UPDATE {table} t SET {assign}
        FROM (SELECT {key}, window_start, {sums} FROM {table}
              WINDOW w AS (PARTITION BY {key} ORDER BY window_start)) r
        WHERE t.{key} = r.{key} AND t.window_start = r.window_start;

        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF pg_trigger_depth() > 1 THEN  -- the recompute's own UPDATE
                RETURN NULL;
            END IF;
            WITH changed AS (
                SELECT {key}, min(window_start) AS since FROM changed_tiles GROUP BY {key}
            ), recomputed AS (
                SELECT t.{key}, t.window_start, {based}
                FROM changed c
                JOIN {table} t ON t.{key} = c.{key} AND t.window_start >= c.since
                LEFT JOIN LATERAL (
                    SELECT {listed} FROM {table} p WHERE p.{key} = c.{key} AND p.window_start < c.since
                    ORDER BY p.window_start DESC LIMIT 1
                ) b ON true
                WINDOW w AS (PARTITION BY t.{key} ORDER BY t.window_start)
            )
            UPDATE {table} t SET {assign}
            FROM recomputed r
            WHERE t.{key} = r.{key} AND t.window_start = r.window_start AND ({old}) IS DISTINCT FROM ({new});
            RETURN NULL;
        END
        $$;

        -- a statement trigger with a transition table takes one event: one trigger each
        CREATE TRIGGER {function}_insert AFTER INSERT ON {table}
            REFERENCING NEW TABLE AS changed_tiles FOR EACH STATEMENT EXECUTE FUNCTION {function}();
        CREATE TRIGGER {function}_update AFTER UPDATE ON {table}
            REFERENCING NEW TABLE AS changed_tiles FOR EACH STATEMENT EXECUTE FUNCTION {function}();
    """


def upgrade() -> None:
    for table, (key, totals) in RUNNING_TOTALS.items():
        op.execute(_running_totals(table, key, totals))


def downgrade() -> None:
    for table, (_, totals) in RUNNING_TOTALS.items():
        op.execute(f"""
            DROP TRIGGER {table}_running_totals_insert ON {table};
            DROP TRIGGER {table}_running_totals_update ON {table};
            DROP FUNCTION {table}_running_totals();
            ALTER TABLE {table} {", ".join(f"DROP COLUMN {total}" for total in totals)};
        """)
