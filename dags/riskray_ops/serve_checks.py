"""The deploy validation of the retraining DAG, over HTTP only: /health, smoke /predict requests and the
``model_version_info`` gauge on /metrics all name the expected version, within a deadline (replicas reload in
place one after another)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

# Valid requests (app.schemas.PredictionRequest): a few customers, amounts and channels, no transaction id
SMOKE_REQUESTS: tuple[dict[str, Any], ...] = (
    {"amount": 42.5, "merchant_id": 7, "customer_id": 11, "country": "US", "device_type": "web"},
    {"amount": 870.0, "merchant_id": 17, "customer_id": 42, "country": "US", "device_type": "mobile"},
    {"amount": 3.2, "merchant_id": 3, "customer_id": 9001, "country": "FR", "device_type": "pos"},
)


class ValidationError(RuntimeError):
    pass


def _served_versions(metrics_text: str) -> set[str]:
    return set(re.findall(r'^model_version_info\{model_version="([^"]+)",variant="champion"\} 1', metrics_text,
                          re.MULTILINE))


def problems(client: httpx.Client, version: str, smoke_requests: int) -> list[str]:
    """What is not yet right with the deployment of ``version``; empty when validated."""
    found = []
    health = client.get("/health")
    body = health.json() if health.headers.get("content-type", "").startswith("application/json") else {}
    if health.status_code != 200 or body.get("model_version") != version:
        found.append(f"/health {health.status_code}: {body or health.text[:200]}")
    for request in (SMOKE_REQUESTS * (smoke_requests // len(SMOKE_REQUESTS) + 1))[:smoke_requests]:
        answer = client.post("/predict", json=request)
        got = answer.json() if answer.status_code == 200 else {}
        if answer.status_code != 200 or got.get("model_version") != version or not 0 <= got.get(
                "fraud_probability", -1) <= 1:
            found.append(f"/predict {answer.status_code}: {answer.text[:200]}")
            break
    served = _served_versions(client.get("/metrics").text)
    if version not in served:
        found.append(f"/metrics: model_version_info names {sorted(served) or 'no version'}, not {version}")
    return found


def validate(serve_url: str, version: str, smoke_requests: int, timeout_s: float,
             say: Callable[[str], None] = print) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=serve_url.rstrip("/"), timeout=30) as client:
        while True:
            try:
                found = problems(client, version, smoke_requests)
            except httpx.HTTPError as error:
                found = [f"{serve_url} unreachable: {error}"]
            if not found:
                say(f"validated: /health, {smoke_requests} smoke /predict requests and /metrics all answer with "
                    f"version {version}")
                return
            if time.monotonic() > deadline:
                raise ValidationError(f"version {version} not validated after {timeout_s:.0f} s: "
                                       + "; ".join(found))
            say("not yet: " + "; ".join(found))
            time.sleep(2)


def healthy(serve_url: str, timeout_s: float, say: Callable[[str], None] = print) -> None:
    """/health answers 200 within the deadline (during a canary or shadow: either model may answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(serve_url.rstrip("/") + "/health", timeout=30)
            if response.status_code == 200:
                say(f"/health: {response.text[:200]}")
                return
            found = f"/health {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as error:
            found = f"{serve_url} unreachable: {error}"
        if time.monotonic() > deadline:
            raise ValidationError(found)
        time.sleep(2)
