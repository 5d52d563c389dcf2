"""Training for real: transactions in PostgreSQL -> Ray Data -> point-in-time features -> Ray Tune 5-fold CV ->
Ray Train on 2 workers -> evaluation -> MLflow run and registry alias; the same run as a Ray job; promote and
rollback; batch scoring with the registered model. The trained version is the session's (trained_model.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from app import db
from app.config import Settings
from app.registry import CHAMPION, Registry
from tests.helpers import riskray

from .model_copies import copy_version
from .trained_model import SEED, Trained, cli_time

pytestmark = pytest.mark.integration


def _mlflow(settings: Settings, endpoint: str, **params: str) -> dict:
    response = httpx.get(f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def _artifacts(settings: Settings, run_id: str, path: str = "") -> set[str]:
    files = _mlflow(settings, "artifacts/list", run_id=run_id, path=path).get("files", [])
    return {f["path"] for f in files}


def test_the_model_trains_on_the_labels_known_at_its_cut_off_never_on_one_reported_after_it(
        stack: Settings, trained: Trained) -> None:
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT transaction_id::text, is_fraud FROM training_features "
                    "WHERE transaction_id = ANY(%s::uuid[])", (list(trained.late_labels),))
        trained_on = dict(cur.fetchall())
    assert trained_on == {t: expected for t, (_, expected) in trained.late_labels.items()}
    assert any(own != expected for own, expected in trained.late_labels.values()), "an event before it counts"
    assert "labelled as known at" in trained.stdout


def test_training_from_the_store_registers_a_challenger_with_every_artifact(stack: Settings, trained: Trained) -> None:
    since, until = trained.since, trained.until
    for phase in ("snapshot:", "features:", "tune: 2 trials x 5-fold CV (time-forward, 0.1-day gap)",
                  "train: 2 Ray Train workers", "calibrate: validation ECE", "evaluate: test AUC",
                  "evaluate: CV (time) vs test: AP", "register: MLflow run"):
        assert phase in trained.stdout, phase

    with Registry(stack) as registry:
        challenger = registry.version(trained.version)
    run = _mlflow(stack, "runs/get", run_id=challenger.run_id)["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert metrics["test_roc_auc"] > 0.8, f"seed {SEED}: test AUC {metrics['test_roc_auc']:.3f}"  # chance is 0.5
    for name in ("cv_aucpr_mean", "cv_aucpr_std", "cv_auc_mean", "cv_auc_std", "test_average_precision",
                 "test_precision", "test_recall", "test_f1", "test_card_precision_at_100", "test_ece",
                 "test_ece_raw", "test_roc_auc_estimated", "test_average_precision_estimated"):
        assert name in metrics, name
    assert params["cv_folds"] == "5" and params["train_workers"] == "2" and "scale_pos_weight" in params
    assert params["calibration"] in ("none", "platt")
    assert (params["cv_scheme"], params["cv_gap_days"]) == ("time", "0.1")
    assert tags["data_md5"] == trained.snapshot_md5  # what DVC records for the same file
    assert tags["feature_set"] and "merchant_fraud_rate_30d" in tags["features"] and tags["git_commit"]

    assert _artifacts(stack, challenger.run_id, "preprocessor") >= {"preprocessor/preprocessor.json",
                                                                    "preprocessor/calibration.json"}
    assert _artifacts(stack, challenger.run_id, "report") >= {
        f"report/{name}" for name in ("roc_curve.png", "pr_curve.png", "confusion_matrix.png",
                                      "feature_importance.png", "reliability.png", "feature_importance.csv",
                                      "metrics.json", "cv_vs_test.json")}
    with Registry(stack) as registry:
        files = registry.download(challenger)
    assert files.booster[:1] == b"{" and '"numeric"' in files.preprocessor  # UBJSON object, fitted state
    assert files.calibration is not None and '"method"' in files.calibration
    model_dir = httpx.get(f"{stack.mlflow_tracking_uri}/api/2.0/mlflow/model-versions/get-download-uri",
                          params={"name": stack.registered_model_name, "version": challenger.version}).json()
    assert model_dir["artifact_uri"]

    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE features ? 'amount_to_mean_7d') FROM training_features "
                    "WHERE event_time >= %s AND event_time < %s", (since, until))
        stored, with_features = cur.fetchone()
    assert stored > 40_000 and stored == with_features


def test_the_review_and_decline_thresholds_are_chosen_by_cost_and_rechosen_for_a_version_without_retraining(
        stack: Settings, trained: Trained) -> None:
    assert "evaluate: review at" in trained.stdout
    with Registry(stack) as registry:
        version = registry.version(trained.version)
    original = version.decision
    assert original is not None and original.reviews_per_day <= stack.review_capacity_per_day
    assert original.review_at <= original.decline_at and original.costs.review_cost == stack.cost_review
    assert _artifacts(stack, version.run_id, "decision") >= {"decision/holdout_scores.parquet",
                                                             "decision/decision.json"}
    assert "report/thresholds.png" in _artifacts(stack, version.run_id, "report")
    try:
        # no reviewer on duty: the re-chosen pair reviews nothing, stored on the version for Serve and promotion
        result = riskray("thresholds", trained.version, "--capacity", "0", "--set")
        assert result.returncode == 0, result.stderr
        assert "stored: review at" in result.stdout and "re-chosen: review at" in result.stdout
        with Registry(stack) as registry:
            after = registry.version(trained.version).decision
        assert after is not None and after.costs.review_capacity_per_day == 0 and after.reviews_per_day == 0
        assert after.review_at == after.decline_at
    finally:
        with Registry(stack) as registry:
            registry.set_decision(trained.version, original)
    missing = riskray("thresholds", "999999")
    assert missing.returncode == 1 and "has no version 999999" in missing.stderr


def test_promote_and_rollback_move_the_champion_alias(stack: Settings, trained: Trained) -> None:
    earlier, later = copy_version(stack, trained.version), copy_version(stack, trained.version)
    assert riskray("promote", earlier).returncode == 0
    result = riskray("promote", later)
    assert result.returncode == 0 and result.stdout.strip().endswith(f"-> {later}")
    with Registry(stack) as registry:
        assert registry.by_alias(CHAMPION).version == later
    result = riskray("rollback")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"champion: {later} -> {earlier}"
    with Registry(stack) as registry:
        assert registry.by_alias(CHAMPION).version == earlier
    missing = riskray("promote", "999999")
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"riskray: model {stack.registered_model_name} has no version 999999")


def test_scoring_a_file_uses_only_earlier_rows_and_the_registered_model(
    stack: Settings, trained: Trained, tmp_path: Path
) -> None:
    since, until = trained.since, trained.until
    with db.connection(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT transaction_id::text, customer_id, merchant_id, amount, currency, event_time AS timestamp, "
                    "card_last_4, is_fraud::int, country, device_type FROM transactions "
                    "WHERE event_time >= %s AND event_time < %s", (since, until))
        snapshot = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    snapshot["timestamp"] = pd.to_datetime(snapshot["timestamp"], utc=True)
    source = tmp_path / "transactions.parquet"
    snapshot.to_parquet(source)
    out = tmp_path / "scores.parquet"
    last_day = until - timedelta(days=1)
    result = riskray("score", "--from-file", str(source), "--since", cli_time(last_day), "--until",
                     cli_time(until), "--model", trained.version, "--out", str(out))
    assert result.returncode == 0, result.stderr
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["transaction_id", "customer_id", "timestamp", "fraud_probability",
                                    "is_fraud_pred", "model_version"]
    assert len(scores) == int((snapshot["timestamp"] >= pd.Timestamp(last_day)).sum())
    assert scores["fraud_probability"].between(0, 1).all()
    # a transaction's score does not depend on anything after it: scoring a file cut at the period end
    # gives the same probabilities for the rows both contain; this time scored in parallel blocks by a Ray Data
    # actor pool (the path of large files), which must agree with the in-process one
    cut = tmp_path / "cut.parquet"
    snapshot[snapshot["timestamp"] < pd.Timestamp(last_day + timedelta(hours=12))].to_parquet(cut)
    parallel = riskray("score", "--from-file", str(cut), "--since", cli_time(last_day), "--model", trained.version,
                       "--out", str(tmp_path / "cut_scores.parquet"), RISKRAY_SCORE_PARALLEL_ABOVE_ROWS="1000")
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    both = scores.merge(pd.read_parquet(tmp_path / "cut_scores.parquet"), on="transaction_id")
    assert len(both) > 1000
    pd.testing.assert_series_equal(both["fraud_probability_x"], both["fraud_probability_y"], check_names=False)
