"""Drift and realised AUC over time, one PNG from the stored monitoring reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.reports import MonitoringReport

TOP_FEATURES = 6


def drift_over_time(history: list[MonitoringReport], path: Path, warn: float, act: float) -> Path:
    """PSI of the most drifted inputs and the champion's realised AUC (with its interval and training AUC),
    one point per report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst: dict[str, float] = {}
    for report in history:
        for d in report.drift:
            if d.psi is not None and d.kind != "score":
                worst[d.name] = max(worst.get(d.name, 0.0), d.psi)
    top = sorted(worst, key=worst.__getitem__, reverse=True)[:TOP_FEATURES]
    fig, (ax_drift, ax_auc) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in top:
        points = [(r.as_of, d.psi) for r in history for d in r.drift if d.name == name and d.psi is not None]
        ax_drift.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax_drift.axhline(warn, color="orange", linestyle="--", label=f"warn {warn}")
    ax_drift.axhline(act, color="red", linestyle="--", label=f"act {act}")
    ax_drift.set_ylabel("PSI")
    ax_drift.set_title("Input drift against the champion's training data (most drifted inputs)")
    ax_drift.legend(fontsize=8, loc="upper left")
    champion = [(r.as_of, a) for r in history for a in r.accuracy
                if a.model_version == r.model_version and a.variant == "champion" and a.roc_auc is not None]
    if champion:
        times = [c[0] for c in champion]
        ax_auc.plot(times, [c[1].roc_auc for c in champion], marker="o", label="realised AUC (champion)")
        lows = [c[1].auc_low if c[1].auc_low is not None else c[1].roc_auc for c in champion]
        highs = [c[1].auc_high if c[1].auc_high is not None else c[1].roc_auc for c in champion]
        ax_auc.fill_between(times, lows, highs, alpha=0.2, label="bootstrap 95 %")
        baselines = [c[1].baseline_auc for c in champion]
        if all(b is not None for b in baselines):
            ax_auc.plot(times, baselines, linestyle="--", color="grey", label="training AUC")
    else:
        ax_auc.text(0.5, 0.5, "not enough data: no matured labels yet", ha="center", va="center",
                    transform=ax_auc.transAxes)
    ax_auc.set_ylabel("ROC AUC")
    ax_auc.set_xlabel("as of (event time)")
    ax_auc.legend(fontsize=8, loc="lower left")
    return _save_dated(fig, path)


def accuracy_by_cohort(report: MonitoringReport, path: Path) -> Path:
    """The label maturity curve, and per day each served model version's estimated and realised AUC (the
    champion's answers: a retrained world has two), over each day's maturity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_auc) = plt.subplots(1, 2, figsize=(12, 4.5))
    curve = report.maturity
    if curve is not None:
        ax_curve.step(curve.days, curve.share, where="post")
        ax_curve.set_title(f"Label maturity ({curve.source}, {curve.frauds:,} frauds)" if curve.frauds
                           else f"Label maturity ({curve.source})")
    ax_curve.set(xlabel="days after the transaction", ylabel="share of its eventual fraud reports known",
                 ylim=(0, 1.02))
    ax_curve.grid(alpha=0.3)
    served = [c for c in report.cohorts if c.variant == "champion"]
    versions = sorted({c.model_version for c in served}, key=lambda v: (len(v), v))
    if served:
        maturity = {c.day: c.maturity for c in served}  # a day's maturity is its age's: one per day
        ax_share = ax_auc.twinx()
        ax_share.bar(list(maturity), list(maturity.values()), alpha=0.15, color="grey")
        ax_share.set(ylim=(0, 1.05), ylabel="frauds known (maturity, bars)")
        for n, version in enumerate(versions):
            rows = [c for c in served if c.model_version == version]
            days, colour = [c.day for c in rows], f"C{n}"
            ax_auc.plot(days, [c.estimated.roc_auc if c.estimated else None for c in rows], marker="o",
                        linestyle="--", color=colour, label=f"v{version} estimated (calibrated scores)")
            ax_auc.plot(days, [c.realised.roc_auc if c.realised else None for c in rows], marker="s",
                        color=colour, label=f"v{version} realised (mature days)")
        ax_auc.set_zorder(ax_share.get_zorder() + 1)
        ax_auc.patch.set_visible(False)
        ax_auc.legend(fontsize=8, loc="lower left")
    else:
        ax_auc.text(0.5, 0.5, "no predictions in the window", ha="center", va="center", transform=ax_auc.transAxes)
    ax_auc.set(ylabel="ROC AUC", title=f"Accuracy per day, as of {report.as_of:%Y-%m-%d %H:%M}")
    return _save_dated(fig, path)


def _save_dated(fig: Any, path: Path) -> Path:
    """Save a figure whose x axis is dates (labels slanted), and close it."""
    import matplotlib.pyplot as plt

    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
