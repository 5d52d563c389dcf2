"""The serving benchmark's baseline: the same request path (serve_deployments.predictor.Predictor — online
features, model, prediction log, metrics) behind a bare uvicorn + FastAPI app, no Ray; concurrent /predict calls
are scored together as the Serve app does (the same ``NaturalBatcher``).

    RISKRAY_BENCH_MODEL=7 uvicorn benchmarks.bare_app:app --port 8100 --no-access-log
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import get_settings
from app.schemas import PredictionRequest, ServeModelConfig
from serve_deployments.batching import NaturalBatcher
from serve_deployments.fast_path import PredictFastPath
from serve_deployments.guard import RequestGuard
from serve_deployments.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS
from serve_deployments.predictor import Predictor


class _Metric:
    """prometheus_client behind the Ray-metrics call style (value, tags=...)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def _child(self, tags: dict[str, str] | None) -> Any:
        return self.metric.labels(**tags) if tags else self.metric

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self._child(tags).inc(value)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._child(tags).observe(value)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._child(tags).set(value)


class PrometheusSink:
    def __init__(self) -> None:
        self.predictions = _Metric(Counter("predictions", "", ["model_version", "result"]))
        self.decisions = _Metric(Counter("decisions", "", ["model_version", "outcome"]))
        self.latency = _Metric(Histogram("prediction_latency_seconds", "", ["endpoint"], buckets=LATENCY_BUCKETS))
        self.batch_size = _Metric(Histogram("prediction_batch_size", "", buckets=BATCH_SIZE_BUCKETS))
        self.degraded = _Metric(Counter("features_degraded", ""))
        self.log_dropped = _Metric(Counter("prediction_log_dropped", "", ["reason"]))
        self.reload_failures = _Metric(Counter("model_reload_failures", ""))


settings = get_settings()
predictor = Predictor(settings, PrometheusSink())
predictor.reconfigure(ServeModelConfig(champion=os.environ.get("RISKRAY_BENCH_MODEL", "champion")).model_dump())
together = NaturalBatcher(
    lambda items: predictor.answer([i for i, _ in items], False, "predict", [t for _, t in items]),
    settings.serve_batch_max_size, settings.serve_batch_concurrency, predictor.metrics.batch_size.observe)
app = FastAPI(title="riskray bare baseline")
app.add_middleware(PredictFastPath)  # the Serve app's request path, fast path included
app.add_middleware(RequestGuard)  # and its guard (body bound, API keys when set), outermost as there
batch_adapter = TypeAdapter(list[PredictionRequest])
# As a Serve replica does after start-up (RAY_SERVE_FREEZE_GC_ON_STARTUP): the model and libraries are long-lived,
# so full collections need not scan them (an unfrozen worker paused ~90 ms per full collection).
gc.collect()
gc.freeze()


async def predict_one(transaction: PredictionRequest, received: float) -> dict[str, Any]:
    return await together.submit((transaction, received))


PredictFastPath.answer_with(predict_one)


@app.post("/predict")
async def predict(request: PredictionRequest, explain: bool = Query(False)) -> Response:
    received = time.perf_counter()
    if explain:
        answer = (await asyncio.to_thread(predictor.answer, [request], True, "predict", [received]))[0]
    else:
        answer = await predict_one(request, received)
    return Response(orjson.dumps(answer), media_type="application/json")


@app.post("/predict/batch")
async def predict_batch(request: Request) -> Response:
    requests = batch_adapter.validate_python(orjson.loads(await request.body()))
    answers = await asyncio.to_thread(predictor.answer, requests, False, "batch")
    return Response(orjson.dumps({"predictions": answers}), media_type="application/json")
