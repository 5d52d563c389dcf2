"""The /predict fast path in front of FastAPI (serve_deployments/fast_path.py), on a small FastAPI app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from app.schemas import PredictionRequest
from serve_deployments.fast_path import PredictFastPath

VALID = {"amount": 12.5, "merchant_id": 3, "customer_id": 7}


def _app() -> FastAPI:
    api = FastAPI()
    api.add_middleware(PredictFastPath)

    @api.post("/predict")
    async def predict(transaction: PredictionRequest, explain: bool = Query(False)) -> dict[str, Any]:
        return {"answered_by": "fastapi", "customer_id": transaction.customer_id, "explain": explain}

    return api


@pytest.fixture
def client() -> Iterator[TestClient]:
    async def handler(transaction: PredictionRequest, received: float) -> dict[str, Any]:
        return {"answered_by": "fast path", "customer_id": transaction.customer_id, "received": received > 0}

    PredictFastPath.answer_with(handler)
    try:
        yield TestClient(_app())
    finally:
        PredictFastPath.answer_with(None)


def test_a_valid_predict_is_answered_by_the_handler_with_the_validated_transaction(client: TestClient) -> None:
    answer = client.post("/predict", json=VALID)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"answered_by": "fast path", "customer_id": 7, "received": True}


def test_an_invalid_body_reaches_fastapi_intact_and_gets_its_422_naming_the_field(client: TestClient) -> None:
    answer = client.post("/predict", json={**VALID, "amount": -1})
    assert answer.status_code == 422
    assert [error["loc"] for error in answer.json()["detail"]] == [["body", "amount"]]
    assert client.post("/predict", json={"amount": 1}).json()["detail"][0]["loc"][0] == "body"
    broken = client.post("/predict", content=b'{"amount": 1', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


def test_query_strings_and_other_content_types_go_to_fastapi(client: TestClient) -> None:
    assert client.post("/predict?explain=true", json=VALID).json()["answered_by"] == "fastapi"
    # a valid body sent as text: FastAPI does not read it as JSON (422); the fast path would have answered it
    plain = client.post("/predict", content=json.dumps(VALID), headers={"content-type": "text/plain"})
    assert plain.status_code == 422 and "answered_by" not in plain.json()
    assert client.post("/predict", json=VALID, headers={"content-type": "application/merge-patch+json"}
                       ).json()["answered_by"] == "fast path"


def test_without_a_handler_every_request_goes_to_fastapi() -> None:
    assert TestClient(_app()).post("/predict", json=VALID).json()["answered_by"] == "fastapi"
