"""Per-customer country counts, so serving can tell a customer's home country (the most used one) and how
usual the transaction's country is without scanning raw transactions. Maintained by the stream's raw writer
in the same database transaction as the rows it counts; filled from existing transactions here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE customer_countries (
            customer_id       bigint NOT NULL,
            country           char(2) NOT NULL,
            transaction_count integer NOT NULL CHECK (transaction_count >= 0),
            PRIMARY KEY (customer_id, country)
        );
        INSERT INTO customer_countries (customer_id, country, transaction_count)
        SELECT customer_id, country, count(*) FROM transactions WHERE NOT is_late GROUP BY 1, 2;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE customer_countries")
