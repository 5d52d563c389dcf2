"""`riskray drift` and `riskray monitor snapshot`: the monitoring side."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    daily_from: Annotated[datetime | None, typer.Option(
        help="one check per day from this time (UTC, event time), and one as of --as-of, each stored: a "
             "backfilled history (/metrics shows the last one stored until the next check); prints a line per "
             "day, then the last report (--json: every report)")] = None,
) -> None:
    """Compare the inputs served in the last RISKRAY_DRIFT_WINDOW_DAYS with the champion's training data (PSI,
    KS), compute realised AUC on predictions whose labels have matured, store the report (Serve's /metrics shows
    it) and say whether retraining is due."""
    from app import job_results, reports
    from monitoring.plots import accuracy_by_cohort, drift_over_time
    from monitoring.run import run, run_daily

    settings = get_settings()
    when = as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else None
    if daily_from is not None:
        start, end = daily_from.replace(tzinfo=daily_from.tzinfo or UTC), when or datetime.now(UTC)
        if start > end:
            raise typer.BadParameter(f"{start:%Y-%m-%d %H:%M} is after the last check {end:%Y-%m-%d %H:%M}",
                                     param_hint="--daily-from")
        daily = run_daily(settings, start, end, say=None if json_out else _daily_line)
        report = daily[-1]
    else:
        report = run(settings, when)
    path = plot or settings.monitoring_dir / "drift.png"
    drift_over_time(reports.history(settings), path, settings.drift_psi_warn, settings.drift_psi_act)
    cohorts_path = accuracy_by_cohort(report, path.with_name(f"{path.stem}_accuracy.png"))
    if json_out:
        if daily_from is not None:
            typer.echo("[" + ",\n".join(r.model_dump_json() for r in daily) + "]")
        else:
            typer.echo(report.model_dump_json(indent=1))
        return
    _print_tables(report)
    typer.echo(f"plots: {path}, {cohorts_path}")
    typer.echo(job_results.line(job_results.REPORT, report.model_dump_json()))


def _daily_line(report: MonitoringReport) -> None:
    """One day of a --daily-from backfill: its verdict, the largest PSI judged, matured and estimated AUC."""
    judged = [d for d in report.drift if d.psi is not None and d.kind != "score"]
    top = max(judged, key=lambda d: d.psi or 0.0, default=None)
    champion = [a for a in report.accuracy if a.model_version == report.model_version and a.variant == "champion"]
    estimate = [e for e in report.estimated if e.model_version == report.model_version and e.variant == "champion"]
    matured = champion[0].roc_auc if champion else None
    estimated = estimate[0].estimated.roc_auc if estimate and estimate[0].estimated else None
    typer.echo(f"{report.as_of:%Y-%m-%d %H:%M}  {'RETRAIN' if report.retrain else report.status:<15} "
               f"{report.predictions:>7,} predictions  "
               + (f"top PSI {top.name} {top.psi:.3f}" if top else "no PSI") + "  "
               + ("matured AUC -" if matured is None else f"matured AUC {matured:.4f}") + "  "
               + ("estimated AUC -" if estimated is None else f"estimated AUC {estimated:.4f}")
               + (f"  on: {', '.join(report.triggers)}" if report.triggers else ""))


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
                     "status", title=f"matured accuracy (mature cohorts pooled): {report.accuracy_start:%Y-%m-%d} .. "
                                     f"{report.accuracy_end:%Y-%m-%d %H:%M} UTC")
    for a in report.accuracy:
        interval = "-" if a.auc_low is None else f"{a.auc_low:.3f} .. {a.auc_high:.3f}"
        accuracy.add_row(a.model_version, a.variant, f"{a.rows:,}", f"{a.positives:,}",
                         "-" if a.roc_auc is None else f"{a.roc_auc:.4f}", interval,
                         "-" if a.average_precision is None else f"{a.average_precision:.4f}",
                         "-" if a.baseline_auc is None else f"{a.baseline_auc:.4f}",
                         a.status if not a.reason else f"{a.status}: {a.reason}")
    console.print(accuracy)
    _print_cohorts(console, report)
    verdict = "RETRAIN" if report.retrain else report.status
    typer.echo(f"verdict: {verdict} — {'; '.join(report.reasons)}")


def _print_cohorts(console: Any, report: MonitoringReport) -> None:
    """The label maturity curve in one line, then per day the maturity, realised and estimated accuracy."""
    from rich.table import Table

    curve = report.maturity
    if curve is not None:
        marks = ", ".join(f"{share:.0%} in {days:.1f} d" for share in (0.5, 0.8, 0.9, 0.95)
                          if (days := curve.days_to(share)) is not None)
        source = (f"measured on {curve.frauds:,} frauds at least {curve.horizon_days:g} days old"
                  if curve.source == "label events" else "the maturity rule (too few label events to measure)")
        typer.echo(f"label maturity: {marks or 'never reached'} ({source})")
    table = Table("day", "model version", "variant", "rows", "maturity", "known frauds", "realised AUC",
                  "estimated AUC", "expected frauds", "realised P@cap", "estimated P@cap", "status",
                  title="accuracy per prediction cohort (realised when mature, estimated from calibrated scores)")
    for c in report.cohorts:
        r, e = c.realised, c.estimated
        rows = f"{c.rows:,}" + (f" (+{c.degraded:,} default features)" if c.degraded else "")
        table.add_row(f"{c.day}", c.model_version, c.variant, rows, f"{c.maturity:.0%}",
                      "-" if r is None else f"{r.frauds:,.0f}", "-" if r is None else f"{r.roc_auc:.4f}",
                      "-" if e is None else f"{e.roc_auc:.4f}", "-" if e is None else f"{e.frauds:.1f}",
                      "-" if r is None or r.precision_at_capacity is None else f"{r.precision_at_capacity:.3f}",
                      "-" if e is None or e.precision_at_capacity is None else f"{e.precision_at_capacity:.3f}",
                      c.status if not c.reason else f"{c.status}: {c.reason}")
    if report.cohorts:
        console.print(table)
    for v in report.estimated:
        e = v.estimated
        typer.echo(f"estimated accuracy of {v.model_version} ({v.variant}) over the drift window: "
                   + ("not enough data" if e is None else
                      f"AUC {e.roc_auc:.4f}, AP {e.average_precision:.4f}, P@capacity {e.precision_at_capacity:.3f}, "
                      f"{e.frauds:.1f} frauds expected")
                   + f"; {v.maturity:.0%} of them known; {v.status}{': ' + v.reason if v.reason else ''}")


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
