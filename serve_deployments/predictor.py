"""The request path behind the prediction API, independent of Ray Serve: online features, model inputs,
champion (and challenger: canary or shadow), decision, prediction log and metrics. The Serve deployment wraps
it; the serving benchmark's bare uvicorn app wraps the very same object."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import numpy as np

from app.config import Settings
from app.decision import OUTCOMES, outcome_code, pair_text
from app.lists import OUTCOME_OF, ListEntry
from app.model_artifact import ScoringModel, decide
from app.model_inputs import FEATURE_SET, model_inputs, raw_columns
from app.reasons import row_of, threshold_reason, worded
from app.registry import load_scoring_model
from app.schemas import HealthResponse, PredictionRequest, ServeModelConfig
from serve_deployments.live_lists import LiveLists
from serve_deployments.online_features import OnlineFeatures
from serve_deployments.prediction_log import BatchInputs, LoggedPrediction, PredictionLog

logger = logging.getLogger("ray.serve")


class Metric(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...
    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class MetricsSink(Protocol):
    predictions: Metric
    decisions: Metric
    latency: Metric
    batch_size: Metric
    degraded: Metric
    log_dropped: Metric
    reload_failures: Metric


class HistorySource(Protocol):
    """Where a transaction's history comes from (the feature store: ``OnlineFeatures``)."""

    def history(self, customers: Sequence[int], merchants: Sequence[int], countries: Sequence[str],
                times: Sequence[datetime]) -> tuple[dict[str, np.ndarray], bool]: ...
    def ping(self) -> str | None: ...


class ListSource(Protocol):
    """The allow/deny lists as they apply now (``LiveLists``)."""

    def decide(self, customer_id: int, merchant_id: int, at: datetime) -> ListEntry | None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


class PredictionSink(Protocol):
    """Where answered predictions are written (the predictions table: ``PredictionLog``)."""

    def append(self, rows: list[LoggedPrediction]) -> None: ...
    def close(self) -> None: ...


ModelLoader = Callable[[str], ScoringModel]  # a version number or alias -> the loaded model


def canary_draw(transaction_id: UUID | None, fallback: random.Random) -> float:
    """A number in [0, 1) that decides a canary request: from its transaction id when it has one, so a retried
    transaction is answered by the same model and a test's split is reproducible; random otherwise."""
    if transaction_id is None:
        return fallback.random()
    digest = hashlib.blake2b(transaction_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Predictor:
    """Models, online features, prediction log and metrics behind the endpoints, independent of Serve. The
    collaborators are arguments (defaults: the feature store, the predictions table, the MLflow registry), so
    routing, error counting and the degraded flag are tested with small real stand-ins."""

    def __init__(self, settings: Settings, metrics: MetricsSink, features: HistorySource | None = None,
                 log: PredictionSink | None = None, loader: ModelLoader | None = None,
                 lists: ListSource | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.features: HistorySource = features or OnlineFeatures(self.settings)
        self.log: PredictionSink = log or PredictionLog(
            self.settings, lambda rows, reason: self.metrics.log_dropped.inc(rows, tags={"reason": reason}))
        # one request, one core: XGBoost threads cost more than they save here
        self.lists: ListSource = lists or LiveLists(self.settings)
        self.loader: ModelLoader = loader or (lambda ref: load_scoring_model(self.settings, ref, threads=1))
        self.config = ServeModelConfig()
        self.champion: ScoringModel | None = None
        self.challenger: ScoringModel | None = None
        self.load_error: str | None = None
        self._pending: dict[str, Any] | None = None  # the user_config of a failed reload, tried again
        self._retry: threading.Thread | None = None
        self._last_attempt = 0.0
        self._random = random.Random()

    # --- model lifecycle ------------------------------------------------------------------------------------
    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Load the configured models, then swap them in at once; a failure keeps the old ones serving."""
        config = ServeModelConfig.model_validate(user_config)
        self._last_attempt = time.monotonic()
        try:
            # the same version with the same thresholds is kept; re-chosen thresholds load it again
            keep = config.decisions == self.config.decisions
            champion = self._load(config.champion, self.champion if keep else None)
            challenger = None
            if config.challenger and config.ab_mode != "off":
                challenger = self._load(config.challenger, self.challenger if keep else None)
        except Exception as error:  # any failure must leave the serving model in place
            self.metrics.reload_failures.inc()
            self.load_error = f"model reload failed: {str(error).splitlines()[0] if str(error) else type(error)}"
            logger.error("%s; still serving %s", self.load_error, self.champion.version if self.champion else None)
            if self.champion is None:
                raise  # nothing to serve: let Serve retry this replica
            # Serve calls reconfigure only when user_config changes, so re-sending the same config (a retried
            # `riskray serve reload`) would never load it: this replica tries again by itself (retry_failed_reload)
            self._pending = user_config
            return
        self.champion, self.challenger, self.config, self.load_error = champion, challenger, config, None
        self._pending = None
        logger.info("serving model version %s (challenger %s, %s)", champion.version,
                    challenger.version if challenger else None, config.ab_mode)

    def _load(self, ref: str, current: ScoringModel | None) -> ScoringModel:
        if current is not None and ref == current.version:
            return current
        return self.loader(ref)

    def retry_failed_reload(self) -> bool:
        """Try a failed reload again, in the background, at most every ``serve_store_retry_s`` (Serve's health
        check calls this). True when a retry was started."""
        pending = self._pending
        if pending is None or (self._retry is not None and self._retry.is_alive()):
            return False
        if time.monotonic() - self._last_attempt < self.settings.serve_store_retry_s:
            return False
        self._retry = threading.Thread(target=self.reconfigure, args=(pending,), name="reload-retry", daemon=True)
        self._retry.start()
        return True

    def problems(self) -> list[str]:
        """Why this predictor cannot answer well: no model, or no feature store. Empty when healthy."""
        reasons = []
        if self.champion is None:
            reasons.append(self.load_error or "model not loaded")
        store = self.features.ping()
        if store:
            reasons.append(store)
        return reasons

    def health(self) -> HealthResponse:
        reasons = self.problems()
        if reasons:
            return HealthResponse(status="unavailable", reasons=reasons, last_reload_error=self.load_error)
        return HealthResponse(status="ok", model_version=self.champion.version if self.champion else None,
                              challenger=self.challenger.version if self.challenger else None,
                              ab_mode=self.config.ab_mode, decisions=self._thresholds(),
                              last_reload_error=self.load_error)

    def _thresholds(self) -> str:
        """The loaded models' pairs, as ``ServeModelConfig.decisions`` says them."""
        return "; ".join(pair_text(m.version, m.review_at, m.decline_at)
                         for m in (self.champion, self.challenger) if m is not None)

    def close(self) -> None:
        self.lists.close()
        self.log.close()

    # --- scoring --------------------------------------------------------------------------------------------
    def answer(self, requests: list[PredictionRequest], explain: bool, endpoint: str,
               received: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """Score ``requests`` together. ``endpoint`` 'predict': each request is one HTTP request (a micro-batch
        of concurrent /predict calls), ``received`` their arrival times (``time.perf_counter``), so each answer
        reports and the latency histogram observes its own wait + scoring time; 'batch': one HTTP request."""
        started = time.perf_counter()
        champion, challenger, config = self.champion, self.challenger, self.config
        if champion is None:
            raise RuntimeError(self.load_error or "model not loaded")
        now = datetime.now(UTC)
        times = [r.timestamp.astimezone(UTC) if r.timestamp else now for r in requests]
        countries = [r.country or "" for r in requests]
        history, degraded = self.features.history([r.customer_id for r in requests],
                                                  [r.merchant_id for r in requests], countries, times)
        raw = raw_columns({
            "amount": [r.amount for r in requests], "timestamp": times, "country": countries,
            "device_type": [r.device_type.value if r.device_type else "" for r in requests],
            "currency": [r.currency or "" for r in requests],
        })
        overrides = {
            "transaction_count": np.array([np.nan if r.transaction_count is None else r.transaction_count
                                           for r in requests], dtype=np.float64),
            "avg_amount": np.array([np.nan if r.avg_amount is None else r.avg_amount for r in requests],
                                   dtype=np.float64),
        }
        inputs = model_inputs(raw, history, overrides)
        matrix, probability = champion.score(inputs)
        n = len(requests)
        versions = [champion.version] * n
        thresholds = np.full(n, champion.threshold)
        pairs = [(champion.review_at, champion.decline_at)] * n  # per row: the answering version's pair
        variants = ["champion"] * n
        challenger_matrix = None
        shadow = None  # the challenger's (probability, decision, outcome): logged, never returned
        if challenger is not None and config.ab_mode == "canary":
            challenger_matrix, challenger_probability = challenger.score(inputs)
            for i, request in enumerate(requests):
                if canary_draw(request.transaction_id, self._random) < config.canary_share:
                    probability[i] = challenger_probability[i]
                    versions[i], thresholds[i], variants[i] = challenger.version, challenger.threshold, "challenger"
                    pairs[i] = (challenger.review_at, challenger.decline_at)
        elif challenger is not None and config.ab_mode == "shadow":
            _, shadow_probability = challenger.score(inputs)
            shadow = (shadow_probability, challenger.decide(shadow_probability),
                      challenger.outcomes(shadow_probability))
        decisions = decide(probability, thresholds)
        probabilities = probability.tolist()
        # per row in Python: a micro-batch holds a few rows, where numpy's per-call cost outweighs the work
        outcomes = [outcome_code(p, *pair) for p, pair in zip(probabilities, pairs, strict=True)]
        listed = [self.lists.decide(r.customer_id, r.merchant_id, now) for r in requests]
        for i, entry in enumerate(listed):
            if entry is not None:  # the list decides, before the model
                outcomes[i] = OUTCOMES.index(OUTCOME_OF[entry.list])  # type: ignore[arg-type]
        reasons = (self._reasons(outcomes, probabilities, pairs, inputs,
                                 [(champion, matrix, "champion"), (challenger, challenger_matrix, "challenger")],
                                 variants, listed)
                   if any(outcomes) or any(e is not None for e in listed) else None)
        explanations = champion.explain(matrix) if explain else None
        done = time.perf_counter()
        latencies_ms = [(done - (received[i] if received else started)) * 1000 for i in range(n)]
        answers = []
        logged = []
        batch_inputs = BatchInputs.of(inputs, FEATURE_SET)
        for i, request in enumerate(requests):
            latency_ms = latencies_ms[i]
            outcome = OUTCOMES[outcomes[i]]
            answer = {"is_fraud": int(decisions[i]), "fraud_probability": probabilities[i],
                      "latency_ms": round(latency_ms, 3), "model_version": versions[i], "features_degraded": degraded,
                      "outcome": outcome, "reasons": [] if reasons is None else reasons[i]}
            if explanations is not None:
                answer["explanation"] = explanations[i]
            answers.append(answer)
            transaction_id = str(request.transaction_id) if request.transaction_id else None
            logged.append(LoggedPrediction(transaction_id, request.customer_id, request.merchant_id, versions[i],
                                           variants[i], probabilities[i], int(decisions[i]), latency_ms,
                                           degraded, now, times[i], batch_inputs, i, outcome))
            if shadow is not None:
                entry = listed[i]  # the lists decide for the shadow model too, as the backtest replays it
                shadow_outcome = OUTCOMES[shadow[2][i]] if entry is None else OUTCOME_OF[entry.list]
                logged.append(LoggedPrediction(transaction_id, request.customer_id, request.merchant_id,
                                               challenger.version, "shadow", float(shadow[0][i]),
                                               int(shadow[1][i]), latency_ms, degraded, now,
                                               times[i], batch_inputs, i, shadow_outcome))
        self.log.append(logged)
        results = ("fraud" if decision else "legit" for decision in decisions)
        counts = Counter(zip(versions, results, strict=True))
        for (version, result), count in counts.items():
            self.metrics.predictions.inc(count, tags={"model_version": version, "result": result})
        for (version, code), count in Counter(zip(versions, outcomes, strict=True)).items():
            self.metrics.decisions.inc(count, tags={"model_version": version, "outcome": OUTCOMES[code]})
        if degraded:
            self.metrics.degraded.inc(len(requests))
        if endpoint == "predict":
            for latency_ms in latencies_ms:
                self.metrics.latency.observe(latency_ms / 1000, tags={"endpoint": endpoint})
        else:
            self.metrics.latency.observe(max(latencies_ms) / 1000, tags={"endpoint": endpoint})
        return answers

    @staticmethod
    def _reasons(outcomes: list[int], probabilities: list[float], pairs: list[tuple[float, float]],
                 inputs: dict[str, np.ndarray], models: list[tuple[ScoringModel | None, np.ndarray | None, str]],
                 variants: list[str], listed: list[ListEntry | None]) -> list[list[dict[str, str]]]:
        """The reasons of each review and decline, from the contributions of the model that answered it; only
        those rows are explained (a contribution costs ~0.3 ms a row, a score microseconds). Approvals: none. A
        listed entity's answer: its list entry, whatever the outcome."""
        out: list[list[dict[str, str]]] = [[] if entry is None else [entry.reason_text()] for entry in listed]
        flagged = [i for i, code in enumerate(outcomes) if code and listed[i] is None]
        for model, matrix, variant in models:
            rows = [i for i in flagged if variants[i] == variant]
            if not rows or model is None or matrix is None:
                continue
            for i, groups in zip(rows, model.reason_groups(matrix[rows]), strict=True):
                out[i] = worded(groups, row_of(inputs, i))
                if not out[i]:
                    declined = outcomes[i] == OUTCOMES.index("decline")
                    out[i] = [threshold_reason(probabilities[i], OUTCOMES[outcomes[i]],
                                               pairs[i][1] if declined else pairs[i][0])]
        return out

    def failed(self, count: int) -> None:
        version = self.champion.version if self.champion else "none"
        self.metrics.predictions.inc(count, tags={"model_version": version, "result": "error"})
