"""`riskray db maintain`: the store's day partitions made ahead and dropped by retention (``app.partitions``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from app.config import get_settings


def maintain(
    now: Annotated[datetime | None, typer.Option(
        help="the time that decides which days are ahead and which expired (UTC); default: the clock",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would change, change nothing")] = False,
) -> None:
    """Make the day partitions ahead, move rows waiting in DEFAULT into their day, drop the days past retention.
    Nightly: the riskray_store_maintenance DAG (or cron) runs it."""
    from app import partitions

    report = partitions.maintain(get_settings(), now.replace(tzinfo=UTC) if now else None, dry_run)
    verb = "would " if report.dry_run else ""
    typer.echo(f"store maintenance as of {report.now:%Y-%m-%d %H:%M} UTC{' (dry run)' if dry_run else ''}")
    for t in report.tables:
        typer.echo(f"{t.table}: {t.partitions} day partitions from {t.oldest_day or '-'} (retention "
                   f"{t.retention_days} days); {verb}create {len(t.created)}, {verb}drop {len(t.dropped)}, "
                   f"{verb}move {t.moved_from_default} rows out of DEFAULT, {verb}delete {t.deleted_from_default} "
                   f"expired rows there; {t.left_in_default} rows wait there for days not made yet")
        for name in t.dropped:
            typer.echo(f"  {'would drop' if dry_run else 'dropped'} {name}")
