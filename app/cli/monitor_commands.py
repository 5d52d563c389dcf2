"""`riskray drift` and `riskray monitor snapshot`: the monitoring side."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.config import get_settings

if TYPE_CHECKING:
    from app.reports import MonitoringReport

monitor = typer.Typer(help="Prometheus panels and alerts of the local stack.", no_args_is_help=True)


def drift(
    as_of: Annotated[datetime | None, typer.Option(
        help="end of the windows (UTC, event time); default now")] = None,
    plot: Annotated[Path | None, typer.Option(
        help="PNG of drift and realised AUC over the stored reports; default <state>/monitoring/drift.png")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON instead of tables")] = False,
) -> None:
    """Compare the inputs served in the last RISKRAY_DRIFT_WINDOW_DAYS with the champion's training data (PSI,
    KS), compute realised AUC on predictions whose labels have matured, store the report (Serve's /metrics shows
    it) and say whether retraining is due."""
    from app import job_results, reports
    from monitoring.plots import drift_over_time
    from monitoring.run import run

    settings = get_settings()
    when = as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else None
    report = run(settings, when)
    path = plot or settings.monitoring_dir / "drift.png"
    drift_over_time(reports.history(settings), path, settings.drift_psi_warn, settings.drift_psi_act)
    if json_out:
        typer.echo(report.model_dump_json(indent=1))
        return
    _print_tables(report)
    typer.echo(f"plot: {path}")
    typer.echo(job_results.line(job_results.REPORT, report.model_dump_json()))


def _print_tables(report: MonitoringReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table("input", "kind", "rows", "PSI", "KS", "gain share", "status", title=(
        f"drift of model {report.model_version} inputs, {report.window_start:%Y-%m-%d %H:%M} .. "
        f"{report.window_end:%Y-%m-%d %H:%M} UTC ({report.predictions:,} predictions)"))
    for d in sorted(report.drift, key=lambda d: -1 if d.psi is None else d.psi, reverse=True):
        table.add_row(d.name, d.kind, f"{d.rows:,}", "-" if d.psi is None else f"{d.psi:.3f}",
                      "-" if d.ks is None else f"{d.ks:.3f}",
                      "-" if d.importance is None else f"{d.importance:.1%}",
                      d.status if d.psi is not None else f"left out: {d.reason}" if d.reason
                      else f"not enough data (< {d.min_rows:,} rows)")
    console.print(table)
    accuracy = Table("model version", "variant", "rows", "frauds", "AUC", "95 % interval", "AP", "training AUC",
                     "status", title=f"realised accuracy, labels matured: {report.accuracy_start:%Y-%m-%d} .. "
                                     f"{report.accuracy_end:%Y-%m-%d %H:%M} UTC")
    for a in report.accuracy:
        interval = "-" if a.auc_low is None else f"{a.auc_low:.3f} .. {a.auc_high:.3f}"
        accuracy.add_row(a.model_version, a.variant, f"{a.rows:,}", f"{a.positives:,}",
                         "-" if a.roc_auc is None else f"{a.roc_auc:.4f}", interval,
                         "-" if a.average_precision is None else f"{a.average_precision:.4f}",
                         "-" if a.baseline_auc is None else f"{a.baseline_auc:.4f}",
                         a.status if not a.reason else f"{a.status}: {a.reason}")
    console.print(accuracy)
    verdict = "RETRAIN" if report.retrain else report.status
    typer.echo(f"verdict: {verdict} — {'; '.join(report.reasons)}")


@monitor.command("snapshot")
def snapshot(
    minutes: Annotated[int, typer.Option(min=1, help="the last N minutes")] = 30,
    out: Annotated[Path | None, typer.Option(help="PNG path; default <state>/monitoring/snapshot.png")] = None,
) -> None:
    """Render the Grafana dashboard's panels from the local Prometheus (range queries) into one PNG."""
    from monitoring.snapshot import render

    settings = get_settings()
    path = out or settings.monitoring_dir / "snapshot.png"
    result = render(settings, minutes, path)
    for title, series in result.items():
        typer.echo(f"{title:<40} {series} series")
    typer.echo(f"snapshot: {path}")
