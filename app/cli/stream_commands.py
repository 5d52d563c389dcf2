"""`riskray simulate` and `riskray stream start|stop|status`."""

from __future__ import annotations

import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from app.config import get_settings

stream = typer.Typer(help="The Spark streaming job: Kafka transactions -> feature store.", no_args_is_help=True)


class Mode(StrEnum):
    live = "live"
    backfill = "backfill"


def simulate(
    mode: Annotated[Mode, typer.Option(help="live: events/s for a duration; backfill: N days at full speed")] = (
        Mode.live
    ),
    rate: Annotated[float, typer.Option(min=0.1, help="live: events per second")] = 1000.0,
    duration: Annotated[float, typer.Option(min=0.1, help="live: seconds to run")] = 60.0,
    days: Annotated[int, typer.Option(min=1, help="backfill: days of history ending now")] = 30,
    seed: Annotated[int, typer.Option(help="same seed, same transactions")] = 42,
    customers: Annotated[int, typer.Option(min=1)] = 5000,
    merchants: Annotated[int, typer.Option(min=12)] = 1000,
    out: Annotated[Path | None, typer.Option(help="write a .parquet or .csv file, not to Kafka")] = None,
    drift_at: Annotated[datetime | None, typer.Option(help="from this time (UTC) fraud mix and amounts drift")] = None,
    scenario: Annotated[list[str] | None, typer.Option(help="NAME=SHARE, e.g. card_testing=0.002; 0 = off")] = None,
    label_time_scale: Annotated[float, typer.Option(
        min=1e-6, max=1, help="live to Kafka: label delays x this (1/720: a month of labels in an hour; 1: real "
                              "delays)")] = 1 / 720,
) -> None:
    """Generate realistic card transactions with fraud scenarios, to Kafka or to a file. Live traffic to Kafka
    carries no label, as a real client's: its labels follow on the labels topic as events, each when its report
    time comes (docs/labels.md has the delay model). Backfilled history and files keep the label in the row."""
    from datetime import UTC

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from app.schemas import LabelEvent
    from streaming.label_delays import LabelDelayConfig
    from streaming.label_feed import LabelFeed
    from streaming.simulate import run_backfill, run_live
    from streaming.simulator import SCENARIOS, DriftConfig, ScenarioShares, Simulator, SimulatorConfig
    from streaming.sinks import FileSink, KafkaSink

    shares = {}
    for item in scenario or []:
        name, _, value = item.partition("=")
        if name not in SCENARIOS or not value:
            raise typer.BadParameter(f"'{item}': expected NAME=SHARE with NAME one of {', '.join(SCENARIOS)}",
                                     param_hint="--scenario")
        try:
            shares[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"'{item}': share must be a number", param_hint="--scenario") from None
    if out is not None and out.suffix not in {".parquet", ".csv"}:
        raise typer.BadParameter("must end in .parquet or .csv", param_hint="--out")
    drift = DriftConfig(at=drift_at.replace(tzinfo=drift_at.tzinfo or UTC) if drift_at else None)
    config = SimulatorConfig(seed=seed, customers=customers, merchants=merchants,
                             shares=ScenarioShares(**shares), drift=drift)
    simulator = Simulator(config)
    sink = FileSink(out) if out else KafkaSink(get_settings())
    target = str(out) if out else f"Kafka topic {get_settings().kafka_topic}"
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                  TimeRemainingColumn()) as progress:
        if mode is Mode.backfill:
            task = progress.add_task(f"backfill {days} days -> {target}", total=days)
            stats = run_backfill(simulator, sink, days, progress=lambda n: progress.advance(task, n))
        else:
            feed = None if out else LabelFeed(LabelDelayConfig(seed=seed, time_scale=label_time_scale),
                                              KafkaSink(get_settings(), get_settings().kafka_labels_topic, LabelEvent))
            task = progress.add_task(f"live {rate:.0f}/s -> {target}", total=duration)
            stats = run_live(simulator, sink, rate, duration, progress=lambda n: progress.advance(task, n),
                             labels=feed)
    table = Table("", "value", title=f"simulated -> {target}")
    table.add_row("events", f"{stats.events:,}")
    table.add_row("seconds", f"{stats.seconds:.1f}")
    table.add_row("events/s", f"{stats.rate:,.0f}")
    table.add_row("delivery after (s)", f"{stats.flush_seconds:.1f}")
    table.add_row("fraud share", f"{stats.fraud_share():.3%}")
    if mode is Mode.live and not out:
        table.add_row(f"label events -> {get_settings().kafka_labels_topic}", f"{stats.labels_sent:,}")
        table.add_row("  not yet due at the end", f"{stats.labels_held:,}")
    for name in SCENARIOS:
        table.add_row(f"  {name}", f"{stats.share(name):.3%}")
    Console().print(table)


@stream.command("start")
def start() -> None:
    """Start the streaming job under the local stack's supervisor (the stack must be up)."""
    from app.operations import stream as stream_program
    from app.operations import supervisor
    from app.operations.errors import StackError

    settings = get_settings()
    if not supervisor.is_running(settings) or supervisor.process_state(settings, "kafka") != "RUNNING":
        raise StackError("the stack is not up; run `riskray stack up` first")
    supervisor.start(settings, stream_program.NAME)
    time.sleep(2)
    state = supervisor.process_state(settings, stream_program.NAME)
    if state != "RUNNING":
        raise StackError(f"the streaming job is {state}; see {supervisor.log_path(settings, stream_program.NAME)}")
    typer.echo(f"stream    running; log {supervisor.log_path(settings, stream_program.NAME)}")


@stream.command("stop")
def stop() -> None:
    """Stop the streaming job at a batch boundary."""
    from app.operations import stream as stream_program
    from app.operations import supervisor

    settings = get_settings()
    if supervisor.is_running(settings):
        supervisor.stop(settings, stream_program.NAME)
    typer.echo("stream    stopped")


@stream.command("reset")
def reset() -> None:
    """Forget the job's checkpoints and progress log so it re-reads the topics from the start.

    Safe for the store: batches are keyed by checkpoint id, a row already stored is skipped by its key, and only
    rows a batch stores are added to the tiles."""
    import shutil

    from app.operations import stream as stream_program
    from app.operations import supervisor
    from app.operations.errors import StackError
    from streaming.status import checkpoint_dir, progress_log

    settings = get_settings()
    if supervisor.process_state(settings, stream_program.NAME) in {"RUNNING", "STARTING"}:
        raise StackError("the streaming job is running; run `riskray stream stop` first")
    shutil.rmtree(checkpoint_dir(settings), ignore_errors=True)
    progress_log(settings).unlink(missing_ok=True)
    typer.echo(f"stream    reset: {checkpoint_dir(settings)} removed; the next start re-reads {settings.kafka_topic}")


@stream.command("status")
def status() -> None:
    """The job's state, last committed batch per query, totals (stored, duplicates, dead letters, late)."""
    from rich.console import Console
    from rich.table import Table

    from app.operations import stream as stream_program
    from app.operations import supervisor
    from streaming.status import last_failure, late_rows_dropped, query_names, query_status

    settings = get_settings()
    state = supervisor.process_state(settings, stream_program.NAME)
    console = Console(width=200)
    console.print(f"stream job: {state}   log: {supervisor.log_path(settings, stream_program.NAME)}")
    table = Table("query", "last batch", "committed at", "totals")
    for name in query_names(settings):
        item = query_status(settings, name)
        totals = ", ".join(f"{k}={v}" for k, v in item.totals.items()) or "-"
        table.add_row(name, str(item.last_batch), str(item.last_commit or "-"), totals)
    console.print(table)
    console.print(f"late rows (stored, kept out of the windows): {late_rows_dropped(settings)}")
    if state != "RUNNING":
        failure = last_failure(supervisor.log_path(settings, stream_program.NAME))
        if failure:
            console.print(f"[red]last failure:[/red] {failure}")
        raise typer.Exit(1)
