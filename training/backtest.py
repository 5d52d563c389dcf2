"""A stored period replayed through the scoring code serving uses, before a change goes live: each model version's
outcomes by its own review/decline thresholds, with the allow/deny lists as they applied at each transaction's
time, and what they would have cost.

Inputs are the point-in-time ones training, batch scoring and the promotion gate use (``training.compare
.score_models``; ``tests/integration/test_feature_parity.py`` pins them to serving's online read); labels are the
ones known when the period ended, so the last days' frauds are partly unknown: the result says how mature they are.

Per day and in total, for each version: reviews, declines, frauds caught (reviewed or declined) and missed, the
money each outcome saved or cost (``app.decision``'s cost model: a caught fraud saves its loss, a review costs a
review, a declined legitimate transaction a false decline, a missed fraud its loss), and card precision at the
review capacity; each with a 95 % bootstrap interval (transactions resampled within the day, a pinned seed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from app import lists
from app.config import Settings
from app.decision import OUTCOMES, CostModel, outcome_codes
from app.errors import UserError
from app.labels import maturity_days
from app.lists import OUTCOME_OF, ListView
from app.registry import ModelVersion, Registry
from training.evaluation import save_figure
from training.heldout import score_models

BOOTSTRAP_DRAWS = 200
BOOTSTRAP_SEED = 20261206
FIGURES = ("rows", "reviews", "declines", "frauds", "caught", "missed", "saved", "cost", "card_precision")


class Figure(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")

    value: float
    low: float
    high: float


class Period(BaseModel):
    day: str = Field(description="YYYY-MM-DD, or 'total'")
    figures: dict[str, Figure]


class VersionBacktest(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")  # a pair that never declines: decline_at inf

    version: str
    review_at: float
    decline_at: float
    listed: int = Field(description="answers the lists decided")
    days: list[Period]
    total: Period


class Backtest(BaseModel):
    since: datetime
    until: datetime
    labels_at: datetime
    maturity_days: int = Field(description="days after a transaction until its label counts as known")
    immature_share: float = Field(description="share of the rows younger than that at labels_at")
    costs: CostModel
    versions: list[VersionBacktest]


def thresholds_of(version: ModelVersion) -> tuple[float, float]:
    """A version's review/decline pair as serving applies it (a version from before decisions: its threshold)."""
    if version.decision_error:
        raise UserError(version.decision_error)
    return version.pair


def outcomes(probability: np.ndarray, review_at: float, decline_at: float, frame: pd.DataFrame,
             view: ListView) -> tuple[np.ndarray, int]:
    """Outcome codes as serving answers them: the thresholds, then the lists as they applied at each row's time."""
    codes = outcome_codes(probability, review_at, decline_at)
    listed = 0
    if len(view):
        times = pd.to_datetime(frame["timestamp"], utc=True)
        for i, (customer, merchant, at) in enumerate(zip(frame["customer_id"], frame["merchant_id"], times,
                                                         strict=True)):
            entry = view.decide(int(customer), int(merchant), at.to_pydatetime())
            if entry is not None:
                codes[i] = OUTCOMES.index(OUTCOME_OF[entry.list])  # type: ignore[arg-type]
                listed += 1
    return codes, listed


def per_row(codes: np.ndarray, fraud: np.ndarray, amount: np.ndarray, costs: CostModel) -> dict[str, np.ndarray]:
    """Each row's part of every additive figure."""
    review, decline = codes == 1, codes == 2
    caught = (review | decline) & fraud
    missed = ~(review | decline) & fraud
    loss = amount * costs.fraud_loss_share
    return {"rows": np.ones(len(codes)), "reviews": review * 1.0, "declines": decline * 1.0, "frauds": fraud * 1.0,
            "caught": caught * 1.0, "missed": missed * 1.0, "saved": np.where(caught, loss, 0.0),
            "cost": review * costs.review_cost + (decline & ~fraud) * costs.decline_cost + np.where(missed, loss, 0.0)}


def _period(name: str, parts: dict[str, np.ndarray], cards: pd.DataFrame, capacity: int,
            rng: np.random.Generator) -> Period:
    n = len(parts["rows"])
    keys = list(parts)
    values = np.column_stack([parts[k] for k in keys]) if n else np.zeros((0, len(keys)))
    resampled = np.zeros((BOOTSTRAP_DRAWS, len(keys)))
    for draw in range(BOOTSTRAP_DRAWS if n else 0):  # one draw at a time: memory stays O(rows), not O(draws x rows)
        resampled[draw] = np.bincount(rng.integers(0, n, n), minlength=n) @ values
    figures = {}
    for j, key in enumerate(keys):
        figures[key] = Figure(value=float(values[:, j].sum()), low=float(np.percentile(resampled[:, j], 2.5)),
                              high=float(np.percentile(resampled[:, j], 97.5)))
    # card precision at the capacity: of the capacity highest-scored cards of each day, the share with a fraud
    top = cards.sort_values("score", ascending=False).groupby("day").head(capacity) if capacity else cards.iloc[:0]
    hits = top["fraud"].to_numpy(dtype=np.float64)
    days = max(cards["day"].nunique(), 1)
    share = hits.sum() / (capacity * days) if capacity else float("nan")
    resampled_hits = (rng.binomial(1, hits.mean(), size=(BOOTSTRAP_DRAWS, len(hits))).sum(axis=1) / (capacity * days)
                      if len(hits) and capacity else np.full(BOOTSTRAP_DRAWS, share))
    figures["card_precision"] = Figure(value=float(share), low=float(np.percentile(resampled_hits, 2.5)),
                                       high=float(np.percentile(resampled_hits, 97.5)))
    return Period(day=name, figures=figures)


def _cards(frame: pd.DataFrame, probability: np.ndarray, fraud: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"day": frame["day"].to_numpy(), "card": frame["customer_id"].to_numpy(),
                         "score": probability, "fraud": fraud}).groupby(["day", "card"], sort=False).agg(
        score=("score", "max"), fraud=("fraud", "max")).reset_index()


def run(settings: Settings, refs: list[str], since: datetime, until: datetime, say: Callable[[str], None],
        labels_at: datetime | None = None) -> tuple[Backtest, pd.DataFrame]:
    """The backtest of ``refs`` (versions or aliases) over [since, until), and the rows with every version's
    probability and outcome (``p_<version>``, ``outcome_<version>``)."""
    labels_at = labels_at or until
    with Registry(settings) as registry:
        resolved = [registry.resolve(ref) for ref in refs]
    say(f"backtest: scoring {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} with "
        f"{', '.join('v' + v.version for v in resolved)}; labels as known at {labels_at:%Y-%m-%d %H:%M}")
    frame, scores = score_models(settings, [v.version for v in resolved], since, until, labels_at,
                                 both_classes=False)
    frame = frame.reset_index(drop=True)
    frame["day"] = pd.to_datetime(frame["timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    view = ListView(lists.during(settings, since, until))
    costs = CostModel.from_settings(settings)
    fraud = frame["is_fraud"].to_numpy().astype(bool)
    amount = frame["amount"].to_numpy(dtype=np.float64)
    days = maturity_days(settings)
    immature = float((pd.to_datetime(frame["timestamp"], utc=True) > labels_at - timedelta(days=days)).mean())
    out = []
    for version in resolved:
        review_at, decline_at = thresholds_of(version)
        probability = scores[version.version]
        codes, listed = outcomes(probability, review_at, decline_at, frame, view)
        frame[f"p_{version.version}"] = probability
        frame[f"outcome_{version.version}"] = [OUTCOMES[c] for c in codes]
        parts = per_row(codes, fraud, amount, costs)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        cards = _cards(frame, probability, fraud)
        periods = []
        for day, index in frame.groupby("day").indices.items():
            periods.append(_period(str(day), {k: v[index] for k, v in parts.items()}, cards[cards["day"] == day],
                                   costs.review_capacity_per_day, rng))
        total = _period("total", parts, cards, costs.review_capacity_per_day, rng)
        out.append(VersionBacktest(version=version.version, review_at=review_at, decline_at=decline_at,
                                   listed=listed, days=periods, total=total))
        say(f"backtest: v{version.version}: {total.figures['reviews'].value:,.0f} reviews, "
            f"{total.figures['declines'].value:,.0f} declines, {total.figures['caught'].value:,.0f} of "
            f"{total.figures['frauds'].value:,.0f} known frauds caught, cost {total.figures['cost'].value:,.0f}")
    return Backtest(since=since, until=until, labels_at=labels_at, maturity_days=days, immature_share=immature,
                    costs=costs, versions=out), frame


def _cell(f: Figure, share: bool = False) -> str:
    if share:
        return "-" if f.value != f.value else f"{f.value:.2f} ({f.low:.2f}–{f.high:.2f})"
    fmt = "{:,.0f}"
    return f"{fmt.format(f.value)} ({fmt.format(f.low)}–{fmt.format(f.high)})"


def markdown(result: Backtest) -> str:
    c = result.costs
    out = [f"# Backtest {result.since:%Y-%m-%d %H:%M} .. {result.until:%Y-%m-%d %H:%M}", "",
           f"Labels as known at {result.labels_at:%Y-%m-%d %H:%M}; a label counts as known {result.maturity_days} "
           f"day(s) after its transaction, and {result.immature_share:.0%} of the rows are younger than that, so "
           "some of their frauds are not known yet (counted as legitimate here).", "",
           f"Costs: a review {c.review_cost:g}, a false decline {c.decline_cost:g}, a missed fraud "
           f"{c.fraud_loss_share:g} x its amount; review capacity {c.review_capacity_per_day} a day. Each cell: the "
           f"value (95 % bootstrap interval, {BOOTSTRAP_DRAWS} draws).", ""]
    header = ("| version | day | rows | reviews | declines | frauds known | caught | missed | saved | cost | "
              "card precision at capacity |")
    out += [header, "| --- | --- |" + " ---: |" * 9]
    for v in result.versions:
        for period in [*v.days, v.total]:
            f = period.figures
            out.append(f"| v{v.version} | {'**total**' if period.day == 'total' else period.day} | "
                       f"{f['rows'].value:,.0f} | " + " | ".join(_cell(f[k]) for k in (
                           "reviews", "declines", "frauds", "caught", "missed", "saved", "cost"))
                       + f" | {_cell(f['card_precision'], share=True)} |")
    out += ["", "| version | review at | decline at | decided by the lists |", "| --- | ---: | ---: | ---: |"]
    out += [f"| v{v.version} | {v.review_at:.4g} | {v.decline_at:.4g} | {v.listed:,} |" for v in result.versions]
    return "\n".join(out) + "\n"


def plot(result: Backtest, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v in result.versions:
        days = [p.day for p in v.days]
        for ax, key in zip(axes, ("cost", "reviews"), strict=True):
            values = [p.figures[key] for p in v.days]
            ax.plot(days, [f.value for f in values], marker="o", label=f"v{v.version}")
            ax.fill_between(days, [f.low for f in values], [f.high for f in values], alpha=0.2)
    axes[0].set_title("cost a day (95 % interval)")
    axes[1].set_title("reviews a day")
    axes[1].axhline(result.costs.review_capacity_per_day, color="grey", linestyle="--", label="capacity")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)
