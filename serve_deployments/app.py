"""The riskray prediction API on Ray Serve: one deployment with a FastAPI ingress that also holds the model.

The model lives in the ingress rather than in a second deployment: a second hop costs a Ray actor call per
request (~1 ms and a serialisation on each side), more than scoring itself (~0.2 ms with ``inplace_predict``);
replicas of this one deployment scale out together with their models.

A plain POST /predict (valid JSON body, no query string) is answered by ``PredictFastPath`` in front of
FastAPI's routing (serve_deployments/fast_path.py); everything else is FastAPI's.

Endpoints: POST /predict, POST /predict/batch (413 above ``serve_max_batch``), POST /labels (label events into
the labels topic: serve_deployments/label_intake.py), GET /health, GET /metrics, GET /docs. In front of all of
them ``RequestGuard`` (serve_deployments/guard.py): 413 above the body bound, 401 without a valid API key when keys
are configured. Import path for Serve configs: ``serve_deployments.app:app``.
"""

import asyncio
import logging
import time
from typing import Any

import orjson
import psycopg2
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import lists
from app.config import get_settings
from app.db import PoolExhaustedError
from app.lists import AlreadyListedError, ListEntries, ListEntry, NewEntry, NotListedError, RemovedEntry
from app.prediction_service import DEPLOYMENT
from app.schemas import (
    BatchPredictionResponse,
    HealthResponse,
    LabelBatch,
    LabelsAccepted,
    PredictionRequest,
    PredictionResponse,
    ServeModelConfig,
)
from serve_deployments.batching import NaturalBatcher
from serve_deployments.fast_path import PredictFastPath
from serve_deployments.guard import RequestGuard, configured_keys, document
from serve_deployments.label_intake import LabelIntake, LabelsNotAcceptedError
from serve_deployments.metrics import (
    LatestReport,
    PredictionMetrics,
    ReviewLoad,
    gauge_lines,
    merged_text,
    review_lines,
)
from serve_deployments.predictor import Predictor

logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="riskray",
    description="Real-time card-fraud scores. Window features the request leaves out come from the feature store.",
    version="1",
)
api.add_middleware(PredictFastPath)  # plain POST /predict skips FastAPI's routing; errors and the rest do not
api.add_middleware(RequestGuard)  # added last: outermost, in front of the fast path too
_batch_adapter = TypeAdapter(list[PredictionRequest])
_STORE_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"description": "the feature store, where the lists live, did not answer: nothing changed, try again"}}


def _openapi() -> dict[str, Any]:
    if api.openapi_schema is None:
        settings = get_settings()
        schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        batch = schema["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        batch["maxItems"] = settings.serve_max_batch  # more answers 413
        api.openapi_schema = document(schema, settings)
    return api.openapi_schema


api.openapi = _openapi  # type: ignore[method-assign]


@api.exception_handler(StarletteHTTPException)
async def _name_the_problem(request: Request, error: StarletteHTTPException) -> Response:
    """FastAPI answers a body it cannot decode (invalid UTF-8, say) with a bare "error parsing the body": say why."""
    detail = error.detail
    if error.status_code == 400 and error.__cause__ is not None:
        detail = f"body could not be read as JSON: {error.__cause__}"
    return ORJSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)
REPLICA_HEADER = "x-riskray-replica"  # which replica answered: shows requests spread over replicas


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=100, health_check_period_s=5,
                  user_config=ServeModelConfig().model_dump())
@serve.ingress(api)
class FraudDetector:
    def __init__(self) -> None:
        self.settings = get_settings()
        metrics = PredictionMetrics()
        self.predictor = Predictor(self.settings, metrics)
        self.together = NaturalBatcher(self._answer, self.settings.serve_batch_max_size,
                                       self.settings.serve_batch_concurrency, metrics.batch_size.observe)
        self.latest_report = LatestReport(self.settings)
        self.review_load = ReviewLoad(self.settings)
        self.labels = LabelIntake(self.settings)
        self.replica_header = {REPLICA_HEADER: serve.get_replica_context().replica_id.unique_id}
        PredictFastPath.answer_with(self._predict_one, self.replica_header)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.predictor.reconfigure(user_config)

    def check_health(self) -> None:
        # Only a missing model makes a replica unhealthy: Serve restarts unhealthy replicas, which cannot fix a
        # database, and degraded answers beat none. A dead database is logged here and answered by /health.
        self.predictor.retry_failed_reload()  # a reload that failed (MLflow away, say) until it succeeds
        problems = self.predictor.problems()
        if self.predictor.champion is None:
            raise RuntimeError(problems[0])
        for problem in problems:
            logger.warning("health: %s", problem)

    def __del__(self) -> None:
        predictor = getattr(self, "predictor", None)
        if predictor is not None:
            predictor.close()

    # --- endpoints ------------------------------------------------------------------------------------------
    @api.post("/predict", response_model=PredictionResponse, response_class=ORJSONResponse)
    async def predict(self, transaction: PredictionRequest,
                      explain: bool = Query(False, description="add the 3 largest feature contributions")
                      ) -> Response:
        received = time.perf_counter()
        if explain:  # rare and costlier: scored on its own rather than slowing a shared batch
            answers = await asyncio.to_thread(self._answer, [(transaction, received)], True)
            return ORJSONResponse(answers[0], headers=self.replica_header)
        return ORJSONResponse(await self._predict_one(transaction, received), headers=self.replica_header)

    async def _predict_one(self, transaction: PredictionRequest, received: float) -> dict[str, Any]:
        """One /predict call, scored together with the calls that arrive while a batch is being scored."""
        return await self.together.submit((transaction, received))

    def _answer(self, items: list[tuple[PredictionRequest, float]], explain: bool = False) -> list[dict[str, Any]]:
        """Score (transaction, arrival time) pairs of concurrent /predict calls; a failure counts them all."""
        try:
            return self.predictor.answer([item[0] for item in items], explain, "predict", [item[1] for item in items])
        except Exception:
            self.predictor.failed(len(items))
            raise

    @api.post("/predict/batch", response_model=BatchPredictionResponse, response_class=ORJSONResponse,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "array", "items": {"$ref": "#/components/schemas/PredictionRequest"}}}}}},
)
    async def predict_batch(self, request: Request,
                            explain: bool = Query(False, description="add the 3 largest contributions")) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": f"JSON decode error: {error}", "input": None}]) from None
        if not isinstance(body, list):
            raise RequestValidationError([{"type": "list_type", "loc": ("body",), "msg": "Input should be a list",
                                           "input": None}])
        if len(body) > self.settings.serve_max_batch:
            return ORJSONResponse({"detail": f"batch of {len(body)} transactions is above the bound of "
                                             f"{self.settings.serve_max_batch}"}, status_code=413)
        try:
            requests = _batch_adapter.validate_python(body)
        except ValidationError as error:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
                                         ) from None
        if not requests:
            return ORJSONResponse({"predictions": []}, headers=self.replica_header)
        try:
            answers = await asyncio.to_thread(self.predictor.answer, requests, explain, "batch")
        except Exception:
            self.predictor.failed(len(requests))
            raise
        return ORJSONResponse({"predictions": answers}, headers=self.replica_header)

    @api.post("/labels", response_model=LabelsAccepted, response_class=ORJSONResponse, status_code=202,
              responses={503: {"description": "Kafka did not acknowledge every event: send the request again"}})
    async def post_labels(self, batch: LabelBatch) -> Response:
        """Label events (fraud or legitimate, from an analyst, a dispute, a chargeback...) for transactions: in the
        labels topic when this answers 202, stored once per label_id by the stream."""
        try:
            accepted = await asyncio.to_thread(self.labels.send, list(batch.labels))
        except LabelsNotAcceptedError as error:
            return ORJSONResponse({"detail": str(error)}, status_code=503, headers=self.replica_header)
        return ORJSONResponse({"accepted": accepted}, status_code=202, headers=self.replica_header)

    @api.get("/lists", response_model=ListEntries, response_class=ORJSONResponse, responses=_STORE_DOWN)
    async def get_lists(self) -> Response:
        """The allow and deny list entries that apply now."""
        try:
            entries = await asyncio.to_thread(lists.live, self.settings)
        except (psycopg2.Error, PoolExhaustedError) as error:
            return self._store_down(error)
        return ORJSONResponse(ListEntries(entries=entries).model_dump(mode="json"), headers=self.replica_header)

    @api.post("/lists", response_model=ListEntry, response_class=ORJSONResponse, status_code=201,
              responses={403: {"description": "no API keys are configured: lists change over HTTP only with keys"},
                         409: {"description": "the entity is already on a list: remove its entry first"},
                         **_STORE_DOWN})
    async def post_list_entry(self, entry: NewEntry) -> Response:
        """Put a card (customer) or a merchant on the allow or deny list: its answers' outcome comes from the list,
        on every replica within RISKRAY_SERVE_LISTS_REFRESH_S, without a redeploy."""
        refused = self._list_changes_refused()
        if refused is not None:
            return refused
        try:
            stored = await asyncio.to_thread(lists.add, self.settings, entry)
        except AlreadyListedError as error:
            return ORJSONResponse({"detail": str(error)}, status_code=409, headers=self.replica_header)
        except (psycopg2.Error, PoolExhaustedError) as error:
            return self._store_down(error)
        await asyncio.to_thread(self.predictor.lists.refresh)
        return ORJSONResponse(stored.model_dump(mode="json"), status_code=201, headers=self.replica_header)

    @api.post("/lists/remove", response_model=ListEntry, response_class=ORJSONResponse,
              responses={403: {"description": "no API keys are configured: lists change over HTTP only with keys"},
                         404: {"description": "the entity is on no list"}, **_STORE_DOWN})
    async def remove_list_entry(self, removed: RemovedEntry) -> Response:
        """Take a card or a merchant off its list (the entry is kept, stamped removed, for replays)."""
        refused = self._list_changes_refused()
        if refused is not None:
            return refused
        try:
            entry = await asyncio.to_thread(lists.remove, self.settings, removed)
        except NotListedError as error:
            return ORJSONResponse({"detail": str(error)}, status_code=404, headers=self.replica_header)
        except (psycopg2.Error, PoolExhaustedError) as error:
            return self._store_down(error)
        await asyncio.to_thread(self.predictor.lists.refresh)
        return ORJSONResponse(entry.model_dump(mode="json"), headers=self.replica_header)

    def _store_down(self, error: Exception) -> Response:
        said = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return ORJSONResponse({"detail": f"feature store unreachable: {said}; nothing was changed, try again"},
                              status_code=503, headers=self.replica_header)

    def _list_changes_refused(self) -> Response | None:
        # an open endpoint that approves whatever it is told would be a way round the model: keys or nothing
        if configured_keys(self.settings):
            return None
        return ORJSONResponse({"detail": "list changes over HTTP need API keys (RISKRAY_SERVE_API_KEYS); "
                                         "locally, use `riskray lists`"}, status_code=403, headers=self.replica_header)

    @api.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    def health(self) -> Response:
        body = self.predictor.health()
        return ORJSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503,
                              headers=self.replica_header)

    @api.get("/metrics", response_class=PlainTextResponse)
    def prometheus(self) -> Response:
        url = f"http://{self.settings.ray_host}:{self.settings.ray_metrics_export_port}/metrics"
        p = self.predictor
        versions = {"champion": p.champion.version} if p.champion else {}
        if p.challenger is not None:
            versions["challenger"] = p.challenger.version
        text = merged_text(url, [*gauge_lines(versions, self.latest_report.gauges()),
                                 *review_lines(self.review_load.reviews_last_day(),
                                               self.settings.review_capacity_per_day)])
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


app = FraudDetector.bind()
