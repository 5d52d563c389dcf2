"""The guard in front of the API (serve_deployments/guard.py): body bound (413) and optional API keys (401), on a
small FastAPI app with the fast path behind it, as the Serve app stacks them. The real Serve deployment is checked
in tests/integration/test_serving.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.schemas import PredictionRequest
from serve_deployments.fast_path import PredictFastPath
from serve_deployments.guard import RequestGuard, document, key_is_valid

VALID = {"amount": 12.5, "merchant_id": 3, "customer_id": 7}


def _client(**settings: Any) -> TestClient:
    api = FastAPI()
    api.add_middleware(PredictFastPath)
    api.add_middleware(RequestGuard, settings=Settings(**settings))

    @api.post("/predict")
    async def predict(transaction: PredictionRequest) -> dict[str, Any]:
        return {"customer_id": transaction.customer_id}

    @api.post("/predict/batch")
    async def batch(transactions: list[PredictionRequest]) -> dict[str, Any]:
        return {"count": len(transactions)}

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return TestClient(api)


@pytest.fixture(autouse=True)
def fast_path() -> Iterator[None]:
    async def handler(transaction: PredictionRequest, received: float) -> dict[str, Any]:
        return {"customer_id": transaction.customer_id, "fast": True}

    PredictFastPath.answer_with(handler)
    yield
    PredictFastPath.answer_with(None)


def test_without_configured_keys_every_endpoint_is_open() -> None:
    client = _client()
    assert client.post("/predict", json=VALID).status_code == 200
    assert client.post("/predict/batch", json=[VALID]).status_code == 200


def test_with_keys_scoring_needs_one_of_them_and_health_stays_open() -> None:
    client = _client(serve_api_keys=SecretStr("old-key-1, new-key-2"))
    missing = client.post("/predict", json=VALID)
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "X-API-Key"
    wrong = client.post("/predict/batch", json=[VALID], headers={"X-API-Key": "new-key"})  # a prefix is no key
    assert wrong.status_code == 401 and "invalid API key" in wrong.json()["detail"]
    assert client.post("/predict", json=VALID, headers={"X-API-Key": "new-key-2"}).json()["fast"] is True
    assert client.post("/predict/batch", json=[VALID], headers={"x-api-key": "old-key-1"}).json() == {"count": 1}
    assert client.get("/health").status_code == 200


def test_a_key_is_rejected_before_the_body_is_judged() -> None:
    client = _client(serve_api_keys=SecretStr("k"))
    assert client.post("/predict", content=b"{broken", headers={"content-type": "application/json"}
                       ).status_code == 401


def test_key_comparison_accepts_only_exact_keys() -> None:
    keys = [b"alpha", b"beta"]
    assert key_is_valid(b"beta", keys) and key_is_valid(b"alpha", keys)
    assert not key_is_valid(b"bet", keys) and not key_is_valid(b"betaa", keys)
    assert not key_is_valid(None, keys) and not key_is_valid(b"", keys)


def test_a_body_above_the_bound_is_413_by_its_declared_length_and_by_what_arrives() -> None:
    client = _client(serve_max_body_bytes=1024)
    big = [VALID] * 100  # ~4.6 kB
    declared = client.post("/predict/batch", json=big)
    assert declared.status_code == 413 and "1024 bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: chunked, counted as it arrives
        yield b"["
        for i in range(100):
            yield (b"," if i else b"") + b'{"amount": 12.5, "merchant_id": 3, "customer_id": 7}'
        yield b"]"

    streamed = client.post("/predict/batch", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/predict/batch", json=[VALID] * 5).status_code == 200


def test_the_openapi_schema_documents_413_and_with_keys_the_scheme_and_401() -> None:
    schema = {"paths": {"/predict": {"post": {"requestBody": {}, "responses": {}}},
                        "/health": {"get": {"responses": {}}}}}
    keyed = document(schema, Settings(serve_api_keys=SecretStr("k")))
    assert keyed["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert set(keyed["paths"]["/predict"]["post"]["responses"]) == {"400", "401", "413"}
    assert keyed["paths"]["/predict"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in keyed["paths"]["/health"]["get"]
