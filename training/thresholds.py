"""The decision thresholds of a model version: the (review, decline) pair that minimises the expected cost on
held-out rows (``app.decision``'s cost model) within the review capacity, and its curves as a PNG.

Rows sorted by probability, highest first, in groups of equal probability (a threshold cannot split a tie). A pair
is two cuts i <= j over the G groups: the first i groups are declined, groups i..j-1 reviewed, the rest approved:

    cost(i, j) = decline_cost * legit[i] + review_cost * (rows[j] - rows[i]) + missed_loss[j]

(``legit[k]``, ``rows[k]``: legitimate rows and all rows in the first k groups; ``missed_loss[k]``: the loss of the
frauds after them). Capacity bounds the band: (rows[j] - rows[i]) per day <= reviews a day, so for each i the best
j is the minimum of ``review_cost * rows[j] + missed_loss[j]`` over a window [i, last(i)] whose both ends only move
forward: a monotone queue finds every window's minimum in one pass, O(G). Ties go to fewer reviews, then fewer
declines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.decision import CostModel, Decision, outcome_codes


@dataclass(frozen=True)
class Cuts:
    """The cumulative sums over probability groups (index k: the first k groups, k = 0..G)."""

    edges: np.ndarray  # the groups' probabilities, highest first (G)
    rows: np.ndarray  # G + 1
    legit: np.ndarray
    frauds: np.ndarray
    missed_loss: np.ndarray  # loss of the frauds after the first k groups

    @classmethod
    def of(cls, probabilities: np.ndarray, labels: np.ndarray, amounts: np.ndarray, loss_share: float) -> Cuts:
        order = np.argsort(-probabilities, kind="stable")
        p, y, loss = probabilities[order], labels[order].astype(np.int64), amounts[order] * loss_share * labels[order]
        edges, starts = np.unique(-p, return_index=True)  # ascending -p: highest probability first
        group_rows = np.diff(np.append(starts, len(p)))
        group_frauds = np.add.reduceat(y, starts) if len(p) else np.zeros(0, dtype=np.int64)
        group_loss = np.add.reduceat(loss, starts) if len(p) else np.zeros(0)
        zero = np.zeros(1)
        rows = np.concatenate([zero, np.cumsum(group_rows)])
        frauds = np.concatenate([zero, np.cumsum(group_frauds)])
        caught_loss = np.concatenate([zero, np.cumsum(group_loss)])
        return cls(edges=-edges, rows=rows, legit=rows - frauds, frauds=frauds,
                   missed_loss=caught_loss[-1] - caught_loss)

    def threshold(self, k: int) -> float:
        """The probability at or over which a row is in the first k groups (inf for none)."""
        return float(self.edges[k - 1]) if k > 0 else float("inf")


def choose(probabilities: np.ndarray, labels: np.ndarray, amounts: np.ndarray, costs: CostModel,
           volume_per_day: float, chosen_on: str = "validation") -> Decision:
    """The cheapest (review, decline) pair on these held-out rows, reviewing at most the capacity a day;
    ``volume_per_day``: transactions a day the rows stand for (their count over their days)."""
    if len(probabilities) == 0:
        raise ValueError("no held-out rows to choose thresholds on")
    cuts = Cuts.of(np.asarray(probabilities, dtype=np.float64), np.asarray(labels), np.asarray(amounts, dtype=float),
                   costs.fraud_loss_share)
    per_day = volume_per_day / len(probabilities)
    band_rows = costs.review_capacity_per_day / per_day  # the most rows the review band may hold
    groups = len(cuts.edges)
    # the j part of cost(i, j); costs are rounded (1e-9) so that float noise never breaks a tie the wrong way
    tail = np.round(costs.review_cost * cuts.rows + cuts.missed_loss, 9)
    window: deque[int] = deque()  # candidate j, increasing tail value, the smallest j first among equals
    last = -1
    best: tuple[float, float, float, int, int] | None = None
    for i in range(groups + 1):
        while last + 1 <= groups and cuts.rows[last + 1] - cuts.rows[i] <= band_rows + 1e-9:
            last += 1
            while window and tail[window[-1]] > tail[last]:
                window.pop()
            window.append(last)
        while window[0] < i:
            window.popleft()
        j = window[0]
        cost = round(float(costs.decline_cost * cuts.legit[i] + tail[j] - costs.review_cost * cuts.rows[i]), 9)
        key = (cost, cuts.rows[j] - cuts.rows[i], cuts.rows[i], i, j)
        if best is None or key[:3] < best[:3]:
            best = key
    assert best is not None
    cost, reviewed, declined, i, j = best
    frauds = int(cuts.frauds[-1])
    return Decision(
        review_at=cuts.threshold(j) if j > i else cuts.threshold(i), decline_at=cuts.threshold(i), costs=costs,
        chosen_on=chosen_on, rows=len(probabilities), frauds=frauds, volume_per_day=volume_per_day,
        expected_cost_per_day=float(cost * per_day), reviews_per_day=float(reviewed * per_day),
        declines_per_day=float(declined * per_day), missed_loss_per_day=float(cuts.missed_loss[j] * per_day),
        frauds_caught_share=float(cuts.frauds[j] / frauds) if frauds else 0.0)


def volume_per_day(timestamps: pd.Series) -> float:
    """Transactions a day of a period: its rows over its days (at least an hour)."""
    times = pd.to_datetime(timestamps, utc=True)
    days = max((times.max() - times.min()).total_seconds() / 86_400, 1 / 24)
    return len(times) / days


def holdout_frame(parts: dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]], volume: float) -> pd.DataFrame:
    """part -> (calibrated probabilities, labels, the rows' frame): what a pair is chosen and judged on, no ids;
    with the period's transactions a day (the held-out rows alone cannot say it: a stratified split spreads them
    over the whole period)."""
    return pd.concat([pd.DataFrame({"part": name, "probability": scores, "is_fraud": labels.astype(np.int8),
                                    "amount": frame["amount"].to_numpy(dtype=float),
                                    "timestamp": pd.to_datetime(frame["timestamp"], utc=True).to_numpy(),
                                    "volume_per_day": volume})
                      for name, (scores, labels, frame) in parts.items()], ignore_index=True)


def choose_on(holdout: pd.DataFrame, costs: CostModel, volume: float) -> tuple[Decision, dict[str, float]]:
    """The pair chosen on the validation rows, and what it costs a day on the test rows (never chosen on)."""
    valid, test = holdout[holdout["part"] == "validation"], holdout[holdout["part"] == "test"]
    decision = choose(valid["probability"].to_numpy(), valid["is_fraud"].to_numpy(), valid["amount"].to_numpy(),
                      costs, volume, chosen_on="validation")
    on_test: dict[str, float] = {}
    if len(test):
        per_day = volume / len(test)
        codes = outcome_codes(test["probability"].to_numpy(), decision.review_at, decision.decline_at)
        on_test = {"decision_cost_per_day": per_day * expected_cost(
                       test["probability"].to_numpy(), test["is_fraud"].to_numpy(), test["amount"].to_numpy(), costs,
                       decision.review_at, decision.decline_at),
                   "decision_reviews_per_day": per_day * float((codes == 1).sum()),
                   "decision_declines_per_day": per_day * float((codes == 2).sum())}
    return decision, on_test


def plot_on(holdout: pd.DataFrame, decision: Decision, path: Path) -> Path:
    """:func:`save_plot` over the validation rows the pair was chosen on."""
    valid = holdout[holdout["part"] == "validation"]
    return save_plot(valid["probability"].to_numpy(), valid["is_fraud"].to_numpy(), valid["amount"].to_numpy(),
                     decision, path)


def expected_cost(probabilities: np.ndarray, labels: np.ndarray, amounts: np.ndarray, costs: CostModel,
                  review_at: float, decline_at: float) -> float:
    """The cost of a given pair on these rows (no capacity: what the pair would cost, however many it reviews)."""
    codes = outcome_codes(probabilities, review_at, decline_at)
    y = np.asarray(labels).astype(bool)
    return float(costs.review_cost * (codes == 1).sum() + costs.decline_cost * ((codes == 2) & ~y).sum()
                 + costs.fraud_loss_share * np.asarray(amounts, dtype=float)[(codes == 0) & y].sum())


def save_plot(probabilities: np.ndarray, labels: np.ndarray, amounts: np.ndarray, decision: Decision,
              path: Path) -> Path:
    """Expected cost and reviews a day against the review threshold (at the chosen decline threshold), with the
    review capacity and the chosen pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    p = np.asarray(probabilities, dtype=np.float64)
    per_day = decision.volume_per_day / len(p)
    top = min(decision.decline_at, 1.0)
    grid = np.unique(np.concatenate([np.quantile(p[p < top], np.linspace(0, 1, 200)) if (p < top).any() else [],
                                     [decision.review_at] if np.isfinite(decision.review_at) else []]))
    costs = [expected_cost(p, labels, amounts, decision.costs, r, decision.decline_at) * per_day for r in grid]
    reviews = [((p >= r) & (p < decision.decline_at)).sum() * per_day for r in grid]
    fig, (ax_cost, ax_reviews) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    ax_cost.plot(grid, costs)
    ax_cost.set(ylabel="expected cost a day", xscale="log",
                title=f"Review threshold, decline at {decision.decline_at:.3g} ({decision.chosen_on}: "
                      f"{decision.rows:,} rows, {decision.frauds} frauds)")
    ax_reviews.plot(grid, reviews)
    ax_reviews.axhline(decision.costs.review_capacity_per_day, color="red", linestyle="--", label="review capacity")
    ax_reviews.set(xlabel="review threshold (probability)", ylabel="reviews a day")
    for ax in (ax_cost, ax_reviews):
        if np.isfinite(decision.review_at):
            ax.axvline(decision.review_at, color="black", linestyle=":", label="chosen")
        ax.grid(alpha=0.3)
    ax_reviews.legend(fontsize=8)
    return save_figure(fig, path)
