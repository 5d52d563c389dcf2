"""`riskray stack up|status|down`."""

from __future__ import annotations

from typing import Annotated

import typer

from app.config import get_settings

stack = typer.Typer(help="The local stack on loopback: PostgreSQL, Kafka, Ray head, MLflow, Prometheus, Alertmanager.",
                    no_args_is_help=True)


@stack.command("up")
def up(
    with_groups: Annotated[list[str] | None, typer.Option(
        "--with", help="optional services to start too: airflow (api-server, scheduler, dag-processor, "
                       "triggerer)")] = None,
) -> None:
    """Start every service in order with health waits; apply migrations; create topics. Safe to repeat."""
    from app.operations import airflow, manager

    settings = get_settings()
    groups = tuple(with_groups or ())
    manager.up(settings, echo=typer.echo, groups=groups)
    if airflow.GROUP in groups:
        typer.echo(f"airflow   UI and REST API on {settings.airflow_url}, user {settings.airflow_admin_user}, "
                   f"password: {airflow.admin_password_source(settings)}")


@stack.command("stop")
def stop(group: Annotated[str, typer.Argument(help="optional service group: airflow")]) -> None:
    """Stop an optional group of services (`stack up --with GROUP` started), the rest of the stack untouched."""
    from app.operations import manager

    manager.stop_group(get_settings(), group, echo=typer.echo)


@stack.command("status")
def status() -> None:
    """Each service, its address, health and log file. Exits 1 if any is down or unhealthy."""
    from rich.console import Console
    from rich.table import Table

    from app.operations import manager

    report = manager.status(get_settings())
    table = Table("service", "address", "state", "health", "log")
    for item in report:
        health = (f"[dim]{item.detail}[/dim]" if item.state == "OFF" else
                  "[green]healthy[/green]" if item.healthy else f"[red]{item.detail}[/red]")
        table.add_row(item.name, item.address, item.state, health, str(item.log))
    Console(width=200).print(table)
    if not all(item.healthy for item in report):
        raise typer.Exit(1)


@stack.command("down")
def down() -> None:
    """Stop every service and supervisord; leaves no process or listening port behind."""
    from app.operations import manager

    manager.down(get_settings(), echo=typer.echo)
