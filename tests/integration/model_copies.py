"""A registered model version copied as a new version (MLflow's REST API, its tags included): for tests that need
several versions to switch, split and roll back between, not several trainings (test_training trains)."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.registry import Registry


def copy_version(settings: Settings, of: str) -> str:
    with Registry(settings) as registry:
        source = registry.version(of)
    root = f"{settings.mlflow_tracking_uri}/api/2.0/mlflow"
    original = httpx.get(f"{root}/model-versions/get", params={"name": settings.registered_model_name, "version": of},
                         timeout=30).json()["model_version"]
    body = {"name": settings.registered_model_name, "source": source.source, "run_id": source.run_id,
            "tags": original.get("tags", [])}
    if source.source.startswith("models:/"):  # MLflow 3: a logged model's source needs its id beside it
        body["model_id"] = source.source.removeprefix("models:/")
    response = httpx.post(f"{root}/model-versions/create", timeout=30, json=body)
    assert response.status_code == 200, (source, response.text)
    return str(response.json()["model_version"]["version"])
