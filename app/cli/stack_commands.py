"""`riskray stack up|status|down`."""

from __future__ import annotations

import typer

from app.config import get_settings

stack = typer.Typer(help="The local stack on loopback: PostgreSQL, Kafka, Ray head, MLflow, Prometheus, Alertmanager.",
                    no_args_is_help=True)


@stack.command("up")
def up() -> None:
    """Start every service in order with health waits; apply migrations; create topics. Safe to repeat."""
    from app.stack import manager

    manager.up(get_settings(), echo=typer.echo)


@stack.command("status")
def status() -> None:
    """Each service, its address, health and log file. Exits 1 if any is down or unhealthy."""
    from rich.console import Console
    from rich.table import Table

    from app.stack import manager

    report = manager.status(get_settings())
    table = Table("service", "address", "state", "health", "log")
    for item in report:
        health = "[green]healthy[/green]" if item.healthy else f"[red]{item.detail}[/red]"
        table.add_row(item.name, item.address, item.state, health, str(item.log))
    Console(width=200).print(table)
    if not all(item.healthy for item in report):
        raise typer.Exit(1)


@stack.command("down")
def down() -> None:
    """Stop every service and supervisord; leaves no process or listening port behind."""
    from app.stack import manager

    manager.down(get_settings(), echo=typer.echo)
