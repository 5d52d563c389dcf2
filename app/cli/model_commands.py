"""`riskray train | promote | rollback | score`: the model lifecycle."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings, get_settings


class Scheme(StrEnum):
    time = "time"
    stratified = "stratified"


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=value.tzinfo or UTC) if value else None


_STARTED = time.monotonic()


def _say(message: str) -> None:
    typer.echo(f"[{time.monotonic() - _STARTED:6.1f} s] {message}")


def train(
    from_file: Annotated[Path | None, typer.Option(help="train from a .parquet/.csv of Kafka-message columns")] = None,
    since: Annotated[datetime | None, typer.Option(help="first event time (UTC) of the training period")] = None,
    until: Annotated[datetime | None, typer.Option(help="end of the training period (UTC); default now")] = None,
    trials: Annotated[int | None, typer.Option(
        min=0, help="Tune trials (0 = defaults, no search) [RISKRAY_TUNE_TRIALS]")] = None,
    folds: Annotated[int | None, typer.Option(min=2, help="CV folds per trial [RISKRAY_CV_FOLDS]")] = None,
    cv: Annotated[Scheme | None, typer.Option(
        help="CV folds: time = each trains on earlier days than it validates on; stratified = random "
             "[RISKRAY_CV_SCHEME]")] = None,
    cv_gap_days: Annotated[float | None, typer.Option(
        min=0, help="time folds: days between training and validation rows [RISKRAY_CV_GAP_DAYS; default the label "
                    "delay, shortened to half of fold 1's first block when the period is too short for it]")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray Train workers [RISKRAY_TRAIN_WORKERS]")] = None,
    split: Annotated[Scheme | None, typer.Option(
        help="test part: time = the latest 20 %; stratified = random [RISKRAY_TRAIN_SPLIT]")] = None,
    seed: Annotated[int | None, typer.Option(help="split, folds and search [RISKRAY_TRAIN_SEED]")] = None,
    register: Annotated[bool, typer.Option(help="log to MLflow and register as 'challenger'")] = True,
) -> None:
    """Train a fraud model: snapshot -> point-in-time features -> Tune k-fold CV -> Ray Train -> evaluate ->
    MLflow (new version, alias 'challenger'). The history before --since still feeds the features."""
    from app import job_results
    from training.options import TrainOptions
    from training.pipeline import run

    settings = get_settings()
    options = TrainOptions.from_settings(
        settings, source_file=from_file, since=_utc(since), until=_utc(until), trials=trials, folds=folds,
        cv=cv.value if cv else None, cv_gap_days=cv_gap_days, workers=workers, split=split.value if split else None,
        seed=seed, register_model=register)
    _say(f"training {'from ' + str(from_file) if from_file else 'from the feature store'}")
    report = run(settings, options, _say)
    if report.version:
        typer.echo(f"model {settings.registered_model_name} version {report.version} is the challenger; "
                   f"`riskray promote {report.version}` makes it the champion")
        typer.echo(job_results.line(job_results.MODEL, json.dumps(
            {"version": report.version, "run_id": report.run_id, "test_roc_auc": report.metrics.get("roc_auc")})))


def promote(version: Annotated[str | None, typer.Argument(help="version to serve; default: the challenger")] = None
            ) -> None:
    """Move the 'champion' alias (what Serve answers with) to VERSION."""
    from app.registry import Registry

    settings = get_settings()
    with Registry(settings) as registry:
        previous, new = registry.promote(version)
    typer.echo(f"champion: {previous or 'none'} -> {new}" if previous != new else f"champion is already {new}")
    _reload_serve(settings)


def rollback() -> None:
    """Move the 'champion' alias back to the version it replaced."""
    from app.registry import Registry

    settings = get_settings()
    with Registry(settings) as registry:
        current, previous = registry.rollback()
    typer.echo(f"champion: {current} -> {previous}")
    _reload_serve(settings)


def _reload_serve(settings: Settings, follow_alias: bool = True) -> None:
    """A running prediction API follows the alias (or, without ``follow_alias``, only its versions' thresholds) at
    once, in place; without one there is nothing to do."""
    from app.operations import serving

    try:
        result = serving.reload(settings, lambda line: None, follow_alias)
    except serving.ServeError:
        return  # no Ray head: the next `riskray serve deploy` picks the alias up
    if result is not None and result[0] != result[1]:
        before, after = result
        if before.champion == after.champion:
            typer.echo(f"Serve now answers by the new thresholds: {after.decisions}")
        else:
            typer.echo(f"Serve now answers with version {after.champion} (was {before.champion}): {after.decisions}")


class Metric(StrEnum):
    roc_auc = "roc_auc"
    average_precision = "average_precision"
    backtest_cost = "backtest_cost"  # each version's outcomes, by its thresholds and the lists, as cost a day


def compare(
    since: Annotated[datetime | None, typer.Option(
        help="first event time (UTC) of the held-out period; default --until minus RISKRAY_COMPARE_DAYS")] = None,
    until: Annotated[datetime | None, typer.Option(
        help="end of the period (UTC); default now minus the label maturity (its labels read now)")] = None,
    challenger: Annotated[str, typer.Option(help="version or alias")] = "challenger",
    champion: Annotated[str, typer.Option(help="version or alias")] = "champion",
    metric: Annotated[Metric | None, typer.Option(help="[RISKRAY_PROMOTION_METRIC]")] = None,
    margin: Annotated[float | None, typer.Option(
        help="the challenger must beat the champion by this much [RISKRAY_PROMOTION_MARGIN]")] = None,
) -> None:
    """Challenger vs champion on the same held-out period from the store: AUC and AP of each (and, by
    backtest_cost, the cost a day of each one's outcomes), logged to MLflow; the last line is the verdict as JSON
    (what the retraining DAG reads)."""
    from datetime import timedelta

    from app import job_results
    from app.labels import maturity_days
    from training.compare import compare as run_compare

    settings = get_settings()
    end = _utc(until) or datetime.now(UTC) - timedelta(days=maturity_days(settings))
    start = _utc(since) or end - timedelta(days=settings.compare_days)
    if start >= end:
        raise typer.BadParameter(f"{start:%Y-%m-%d %H:%M} is not before {end:%Y-%m-%d %H:%M}", param_hint="--since")
    result = run_compare(settings, start, end, (metric.value if metric else settings.promotion_metric),
                         settings.promotion_margin if margin is None else margin, challenger, champion, _say)
    typer.echo(job_results.line(job_results.COMPARISON, result.model_dump_json()))


def score(
    from_file: Annotated[Path, typer.Option(help="transactions (.parquet/.csv); earlier rows are history")],
    out: Annotated[Path, typer.Option(help="scores file (.parquet or .csv)")],
    since: Annotated[datetime | None, typer.Option(help="score transactions from this time (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="... up to this time (UTC)")] = None,
    model: Annotated[str, typer.Option(help="'champion', 'challenger' or a version number")] = "champion",
) -> None:
    """Score a period's transactions with a registered model, features built from the file's earlier rows."""
    if out.suffix not in {".parquet", ".csv"}:
        raise typer.BadParameter("must end in .parquet or .csv", param_hint="--out")
    from training.scoring import score_file

    settings = get_settings()
    result = score_file(settings, from_file, out, _utc(since), _utc(until), model, _say)
    typer.echo(f"{result.rows:,} transactions scored with version {result.version}: {result.flagged:,} flagged "
               f"-> {out}")


def thresholds(
    version: Annotated[str | None, typer.Argument(help="a registered version; default: the champion")] = None,
    review_cost: Annotated[float | None, typer.Option(
        min=0, help="one review [default: the version's stored costs, else RISKRAY_COST_REVIEW]")] = None,
    decline_cost: Annotated[float | None, typer.Option(
        min=0, help="declining one legitimate transaction [default: stored, else RISKRAY_COST_DECLINE_LEGIT]")] = None,
    fraud_loss_share: Annotated[float | None, typer.Option(
        min=0, max=1,
        help="share of a missed fraud's amount lost [default: stored, else RISKRAY_COST_FRAUD_LOSS_SHARE]")] = None,
    capacity: Annotated[int | None, typer.Option(
        min=0, help="reviews a day the team can do [default: stored, else RISKRAY_REVIEW_CAPACITY_PER_DAY]")] = None,
    store: Annotated[bool, typer.Option("--set", help="store the re-chosen pair on the version")] = False,
) -> None:
    """Print a version's review/decline thresholds and re-choose them for these costs on its held-out rows (no
    retraining); draw expected cost and reviews a day against the review threshold (PNG)."""
    import io

    import pandas as pd
    from pydantic import ValidationError

    from app.decision import CostModel
    from app.errors import UserError
    from app.registry import CHAMPION, Registry, RegistryError
    from training.thresholds import choose_on, plot_on, volume_per_day

    settings = get_settings()
    with Registry(settings) as registry:
        chosen = registry.by_alias(CHAMPION) if version is None else registry.version(version)
        if chosen is None:
            raise RegistryError("no champion: name a version (`riskray thresholds VERSION`)")
        stored = chosen.decision
        _say_decision("stored", stored, chosen.threshold)
        if chosen.decision_error:
            typer.echo(f"   stored: {chosen.decision_error}")
        base = CostModel.from_settings(settings) if stored is None else stored.costs
        overrides = {k: v for k, v in {"review_cost": review_cost, "decline_cost": decline_cost,
                                       "fraud_loss_share": fraud_loss_share,
                                       "review_capacity_per_day": capacity}.items() if v is not None}
        try:
            costs = CostModel.model_validate({**base.model_dump(), **overrides})
        except ValidationError as error:
            raise UserError(f"costs: {error.errors()[0]['loc'][0]}: {error.errors()[0]['msg']}") from None
        try:
            holdout = pd.read_parquet(io.BytesIO(registry.holdout_scores(chosen)))
        except RegistryError as error:
            if store:
                raise
            typer.echo(f"re-chosen: none ({error})")
            return
        volume = (float(holdout["volume_per_day"].iloc[0]) if "volume_per_day" in holdout
                  else stored.volume_per_day if stored is not None else volume_per_day(holdout["timestamp"]))
        decision, on_test = choose_on(holdout, costs, volume)
        _say_decision("re-chosen", decision, chosen.threshold)
        if on_test:
            typer.echo(f"     test: the re-chosen pair costs {on_test['decision_cost_per_day']:,.0f} a day, "
                       f"{on_test['decision_reviews_per_day']:,.0f} reviews and "
                       f"{on_test['decision_declines_per_day']:,.0f} declines a day")
        path = settings.state_dir / "thresholds" / f"{settings.registered_model_name}-v{chosen.version}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_on(holdout, decision, path)
        typer.echo(f"plot: {path}")
        if store:
            registry.set_decision(chosen.version, decision)
            typer.echo(f"version {chosen.version} now reviews at {decision.review_at:.4g} and declines at "
                       f"{decision.decline_at:.4g}")
    if store:
        _reload_serve(settings, follow_alias=False)  # a served version answers by its new pair at once


def backtest(
    since: Annotated[datetime, typer.Option(help="first event time (UTC) of the stored period")],
    until: Annotated[datetime, typer.Option(help="end of the period (UTC); its labels as known then")],
    model: Annotated[list[str] | None, typer.Option(
        help="a version or alias; repeat for several side by side [default: champion]")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for backtest.md/.json/.png and the rows' outcomes "
                                                  "[default: the state folder's backtests/]")] = None,
) -> None:
    """Replay a stored period through serving's scoring code (point-in-time inputs, each version's thresholds, the
    lists as they applied) for one or more versions; per day and in total: reviews, declines, frauds caught and
    missed, money saved and spent, card precision at the review capacity, with bootstrap intervals."""
    from training.backtest import markdown, plot, run

    settings = get_settings()
    start, end = _utc(since), _utc(until)
    if start >= end:
        raise typer.BadParameter(f"{start:%Y-%m-%d %H:%M} is not before {end:%Y-%m-%d %H:%M}", param_hint="--since")
    result, rows = run(settings, model or ["champion"], start, end, _say)
    folder = out or settings.state_dir / "backtests" / f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "backtest.md").write_text(markdown(result))
    (folder / "backtest.json").write_text(result.model_dump_json(indent=1))
    keep = ["transaction_id", "customer_id", "merchant_id", "timestamp", "amount", "is_fraud",
            *[c for c in rows.columns if c.startswith(("p_", "outcome_"))]]
    rows[keep].assign(transaction_id=rows["transaction_id"].astype(str)).to_parquet(folder / "outcomes.parquet")
    plot(result, folder / "backtest.png")
    typer.echo(markdown(result))
    typer.echo(f"written: {folder}/backtest.md, backtest.json, backtest.png, outcomes.parquet")


def _say_decision(name: str, d: object, threshold: float) -> None:
    from app.decision import Decision

    if not isinstance(d, Decision):
        typer.echo(f"{name:>9}: none (declines at the F1 threshold {threshold:.4g} and reviews nothing)")
        return
    typer.echo(f"{name:>9}: review at {d.review_at:.4g}, decline at {d.decline_at:.4g}; "
               f"{d.reviews_per_day:,.0f} reviews and {d.declines_per_day:,.0f} declines a day, "
               f"{d.frauds_caught_share:.0%} of frauds caught, expected cost {d.expected_cost_per_day:,.0f} "
               f"a day (review {d.costs.review_cost:g}, false decline {d.costs.decline_cost:g}, "
               f"loss share {d.costs.fraud_loss_share:g}, capacity {d.costs.review_capacity_per_day})")
