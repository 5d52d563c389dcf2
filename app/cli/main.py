"""The `riskray` command line: a thin face over the packages. Heavy imports happen inside each command, so
`riskray --help` stays instant and importing `app` never loads Ray or Spark."""

from __future__ import annotations

import sys

import typer

from app.cli import (
    cluster,
    demo,
    list_commands,
    model_commands,
    monitor_commands,
    serve_commands,
    stack_commands,
    store_commands,
    stream_commands,
)
from app.config import Settings, SettingsError, get_settings

cli = typer.Typer(
    name="riskray",
    help="Real-time card-fraud detection on Ray. Settings come from RISKRAY_* environment variables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(stack_commands.stack, name="stack")
cli.add_typer(stream_commands.stream, name="stream")
cli.add_typer(serve_commands.serve, name="serve")
cli.command("simulate")(stream_commands.simulate)
cli.command("train")(model_commands.train)
cli.command("promote")(model_commands.promote)
cli.command("rollback")(model_commands.rollback)
cli.command("score")(model_commands.score)
cli.command("compare")(model_commands.compare)
cli.command("thresholds")(model_commands.thresholds)
cli.command("backtest")(model_commands.backtest)
cli.add_typer(list_commands.lists_cli, name="lists")
cli.command("drift")(monitor_commands.drift)
cli.add_typer(monitor_commands.monitor, name="monitor")
cli.command("demo")(demo.demo)
cli.add_typer(cluster.cluster, name="cluster")
db = typer.Typer(help="The feature-store database.", no_args_is_help=True)
cli.add_typer(db, name="db")


@db.command("migrate")
def db_migrate() -> None:
    """Apply the feature-store migrations (a no-op when already at the latest revision)."""
    from app import migrate

    settings = get_settings()
    migrate.upgrade(settings)
    typer.echo(f"schema at revision {migrate.current_revision(settings)}")


db.command("maintain")(store_commands.maintain)


@cli.command("config")
def show_config() -> None:
    """Print the effective settings and the environment variable that sets each (secrets masked)."""
    settings = get_settings()
    for name in Settings.model_fields:
        typer.echo(f"RISKRAY_{name.upper():<28} {getattr(settings, name)}")


def main() -> None:
    """Entry point: user-fixable problems end as one line on stderr, never a traceback. Usage mistakes (a bad
    option value, an unknown command) too: click's own report is a usage box of several lines."""
    # Typer 0.29 raises the exceptions of the click it vendors (typer._click), not of a separately installed click
    from typer._click import exceptions as usage

    from app.errors import UserError

    _join_local_ray_on_loopback()
    try:
        result = cli(standalone_mode=False)
    except usage.NoArgsIsHelpError as error:  # a bare group: its help, as before
        error.show()
        sys.exit(2)
    except usage.UsageError as error:
        where = error.ctx.command_path if error.ctx else "riskray"
        typer.echo(f"riskray: {error.format_message()} (see `{where} --help`)", err=True)
        sys.exit(2)
    except usage.ClickException as error:
        typer.echo(f"riskray: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("riskray: aborted", err=True)
        sys.exit(130)
    except SettingsError as error:
        typer.echo(f"riskray: {error}", err=True)
        sys.exit(2)
    except UserError as error:
        typer.echo(f"riskray: {error}", err=True)
        sys.exit(1)
    except _connection_errors() as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        typer.echo(f"riskray: cannot reach a service: {first} (is the stack up? `riskray stack status`)", err=True)
        sys.exit(1)
    except OSError as error:  # a missing or unreadable file named on the command line
        typer.echo(f"riskray: {error.strerror or error}: {error.filename}" if error.filename else f"riskray: {error}",
                   err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def _join_local_ray_on_loopback() -> None:
    """A command that joins the local Ray head (train, score) must see it on loopback, where it listens: set before
    any command imports Ray (app.ray_client)."""
    import os

    from app.ray_client import client_environment

    try:
        settings = get_settings()
    except SettingsError:
        return  # the command reports it
    for name, value in client_environment(settings).items():
        os.environ.setdefault(name, value)


def _connection_errors() -> tuple[type[BaseException], ...]:
    import psycopg2

    return (psycopg2.OperationalError, ConnectionError)


if __name__ == "__main__":
    main()
