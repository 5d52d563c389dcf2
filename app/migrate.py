"""Apply the feature-store migrations (Alembic) to the configured database. Re-applying is a no-op."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from app.config import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in a URL-quoted password.
    config.set_main_option("sqlalchemy.url", settings.postgres_url().replace("%", "%%"))
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings or get_settings()), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Back to ``revision`` (benchmarks measure an older checkout on a scratch store this way)."""
    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings | None = None) -> str | None:
    settings = settings or get_settings()
    engine = create_engine(settings.postgres_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision(settings: Settings | None = None) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings or get_settings())).get_current_head()
