"""`riskray demo`: the whole fraud-detection loop on this machine, drift and retraining included, reported."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import typer

# The demo's own world when riskray runs with the default names: the demo makes its world fresh every run, and
# that must never be the store, registry and topics of the user's own work. (A caller already pointing at another
# world, the tests' scratch world say, runs the demo there.)
DEMO_WORLD = {
    "RISKRAY_POSTGRES_DB": "riskray_demo",
    "RISKRAY_KAFKA_TOPIC": "demo.transactions",
    "RISKRAY_KAFKA_DLQ_TOPIC": "demo.transactions.dlq",
    "RISKRAY_KAFKA_LABELS_TOPIC": "demo.labels",
    "RISKRAY_KAFKA_LABELS_DLQ_TOPIC": "demo.labels.dlq",
    "RISKRAY_STREAM_QUERY_PREFIX": "demo",
    "RISKRAY_REGISTERED_MODEL_NAME": "riskray-fraud-demo",
    "RISKRAY_MLFLOW_EXPERIMENT": "riskray-demo",
    "RISKRAY_AIRFLOW_DB": "riskray_demo_airflow",
    "RISKRAY_AIRFLOW_DAG_SCHEDULE": "",  # the demo triggers its run; no scheduled catch-up run beside it
    "RISKRAY_PROMETHEUS_SCRAPE_INTERVAL_S": "5",  # a short run: more points on the dashboard
}
WORLD_NAMES = ("postgres_db", "kafka_topic", "registered_model_name", "mlflow_experiment", "airflow_db")


def _enter_world() -> dict[str, str]:
    """Switch this process (and what it starts) to the demo's world when the settings name the default one."""
    from app.config import Settings, get_settings

    settings = get_settings()
    if any(getattr(settings, n) != Settings.model_fields[n].default for n in WORLD_NAMES):
        return {}
    state = settings.state_dir / "demo"
    names = {**DEMO_WORLD, "RISKRAY_TRAINING_WORK_DIR": str(state / "training"),
             "RISKRAY_MONITORING_WORK_DIR": str(state / "monitoring"),
             "RISKRAY_AIRFLOW_WORK_DIR": str(state / "airflow")}
    os.environ.update(names)
    get_settings.cache_clear()
    return names


def demo(
    quick: Annotated[bool, typer.Option("--quick", help="a smaller world, the same phases and checks (make test)")] = (
        False
    ),
    keep_running: Annotated[bool, typer.Option(
        help="leave the stack up to explore; else stop what the demo started")] = False,
    seed: Annotated[int, typer.Option(help="the simulated world")] = 42,
    today: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="the day the timeline ends before (UTC; default: today); the tests pin it, so "
                                   "their world never depends on the clock")] = None,
) -> None:
    """Run the whole loop: stack, history through Kafka -> Spark -> PostgreSQL, a champion trained (Tune CV + Ray
    Train) and served, live traffic scored over HTTP, the simulator's drift, the Airflow retraining run (drift ->
    Ray training job -> comparison -> promotion -> Serve reload -> validation), and a report (Markdown + PNGs in
    <state>/demo/<run>/). Ctrl-C stops everything the demo started."""
    from rich.console import Console

    from app.cli.demo.interrupts import INTERRUPTS
    from app.cli.demo.plan import FULL, HISTORY_MAX_OFFSETS, QUICK, WATERMARK_MINUTES
    from app.cli.demo.run import Demo
    from app.config import get_settings
    from streaming.label_delays import LabelDelayConfig

    names = _enter_world()
    plan = (QUICK if quick else FULL).model_copy(update={"seed": seed})
    # the demo's short label delay, for this process and all it starts (training, Serve's replicas, the DAG's jobs)
    os.environ["RISKRAY_LABEL_DELAY_DAYS"] = str(plan.label_delay_days)
    # the label maturity curve's horizon, scaled as the label events' delays are (its curve comes from them)
    horizon = plan.label_horizon_days(get_settings().label_horizon_days, LabelDelayConfig().chargeback_limit_days)
    os.environ["RISKRAY_LABEL_HORIZON_DAYS"] = f"{horizon:g}"
    os.environ["RISKRAY_STREAM_WATERMARK_SECONDS"] = str(WATERMARK_MINUTES * 60)  # why: app/cli/demo/plan.py
    os.environ["RISKRAY_STREAM_MAX_OFFSETS_PER_TRIGGER"] = str(HISTORY_MAX_OFFSETS)
    get_settings.cache_clear()
    settings = get_settings()
    run_dir = settings.state_dir / "demo" / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{plan.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if names:  # for exploring afterwards: `set -a; . <run>/world.env; set +a`
        (run_dir / "world.env").write_text("".join(f"{k}={v}\n" for k, v in names.items()))
    console = Console()
    console.print(f"riskray demo ({plan.name}): world {settings.postgres_db}, run folder {run_dir}")

    INTERRUPTS.install()
    try:
        Demo(settings, plan, run_dir, console, keep_running=keep_running, today=today).run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything the demo started is stopped[/yellow]")
        raise typer.Exit(130) from None
    from app.cli.demo.report import DemoReport

    report = DemoReport.model_validate_json((run_dir / "report.json").read_text())
    if keep_running:
        world = f"; its world: `set -a; . {run_dir / 'world.env'}; set +a`" if names else ""
        console.print(f"the stack stays up{world}; `riskray stack down` stops it")
    if not report.passed:
        console.print("[red]some checks failed: see the report[/red]")
        raise typer.Exit(1)
