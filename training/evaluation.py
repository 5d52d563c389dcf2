"""Evaluation of a fraud model on the held-out (later) part: ranking metrics, decisions at a threshold chosen
on validation data, card precision@100, and the plots people look at.

Threshold rule: the one that maximises F1 on the validation part (the latest slice of the training period,
never the test part). F1 weighs missed frauds and false alarms alike; a business cost matrix would replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from app.model_artifact import decide

TOP_CARDS = 100


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, thresholds = skm.precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if len(thresholds) == 0:
        return 0.5
    return float(thresholds[int(np.argmax(f1[:-1]))])


def card_precision_at_k(frame: pd.DataFrame, scores: np.ndarray, k: int = TOP_CARDS) -> float:
    """Mean over days of the share of frauded cards among the k highest-scored cards of that day (a card is
    scored by its highest transaction score, and is a fraud case if any of its transactions that day is)."""
    cards = pd.DataFrame({
        "day": pd.to_datetime(frame["timestamp"]).dt.floor("D").to_numpy(),
        "card": frame["customer_id"].astype(str).to_numpy() + ":" + frame["card_last_4"].astype(str).to_numpy(),
        "score": scores, "fraud": frame["is_fraud"].to_numpy(),
    }).groupby(["day", "card"], sort=False).agg(score=("score", "max"), fraud=("fraud", "max")).reset_index()
    per_day = cards.sort_values("score", ascending=False).groupby("day").head(k).groupby("day")["fraud"]
    return float((per_day.sum() / k).mean())


@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: np.ndarray  # [[tn, fp], [fn, tp]]
    threshold: float


def evaluate(frame: pd.DataFrame, scores: np.ndarray, threshold: float) -> Evaluation:
    labels = frame["is_fraud"].to_numpy()
    decisions = decide(scores, threshold)
    confusion = skm.confusion_matrix(labels, decisions, labels=[0, 1])
    both = len(np.unique(labels)) == 2
    metrics = {
        "roc_auc": float(skm.roc_auc_score(labels, scores)) if both else float("nan"),
        "average_precision": float(skm.average_precision_score(labels, scores)) if both else float("nan"),
        "precision": float(skm.precision_score(labels, decisions, zero_division=0)),
        "recall": float(skm.recall_score(labels, decisions, zero_division=0)),
        "f1": float(skm.f1_score(labels, decisions, zero_division=0)),
        "card_precision_at_100": card_precision_at_k(frame, scores),
        "threshold": threshold,
        "rows": float(len(labels)),
        "frauds": float(labels.sum()),
    }
    return Evaluation(metrics, confusion, threshold)


def feature_importance(booster: object, names: list[str]) -> pd.DataFrame:
    gain = booster.get_score(importance_type="total_gain")  # type: ignore[attr-defined]
    frame = pd.DataFrame({"feature": names, "total_gain": [gain.get(n, 0.0) for n in names]})
    total = frame["total_gain"].sum() or 1.0
    frame["share"] = frame["total_gain"] / total
    return frame.sort_values("total_gain", ascending=False).reset_index(drop=True)


def save_plots(directory: Path, labels: np.ndarray, scores: np.ndarray, evaluation: Evaluation,
               importance: pd.DataFrame) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    ax.plot(fpr, tpr, label=f"AUC {evaluation.metrics['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(loc="lower right")
    paths.append(save_figure(fig, directory / "roc_curve.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    ax.plot(recall, precision, label=f"AP {evaluation.metrics['average_precision']:.3f}")
    ax.axhline(labels.mean(), linestyle="--", color="grey", linewidth=0.8, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    ax.legend(loc="upper right")
    paths.append(save_figure(fig, directory / "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(evaluation.confusion, cmap="Blues")
    for (i, j), value in np.ndenumerate(evaluation.confusion):
        ax.text(j, i, f"{value:,}", ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["legit", "fraud"], yticklabels=["legit", "fraud"],
           xlabel="predicted", ylabel="actual", title=f"Confusion matrix @ {evaluation.threshold:.3f}")
    paths.append(save_figure(fig, directory / "confusion_matrix.png"))

    top = importance.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh(top["feature"], top["share"])
    ax.set(xlabel="share of total gain", title="Feature importance")
    paths.append(save_figure(fig, directory / "feature_importance.png"))
    return paths


def save_figure(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
