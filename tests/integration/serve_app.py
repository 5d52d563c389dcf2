"""Deploying the prediction API on the stack's Ray head for a test, every replica running before it returns, and
removing it again."""

from __future__ import annotations

import time

from app.config import Settings
from app.operations import serving
from app.prediction_service import DEPLOYMENT
from app.schemas import ServeModelConfig


def deploy(settings: Settings, models: ServeModelConfig, replicas: int = 1) -> None:
    config = serving.local_config(settings, serving.resolve_models(settings, models))
    autoscaling = config["applications"][0]["deployments"][0]["autoscaling_config"]
    autoscaling.update(min_replicas=replicas, max_replicas=max(replicas, autoscaling["max_replicas"]))
    with serving.ServeClient(settings) as client:
        client.deploy(config)
        client.wait_running(300, lambda line: None)
        deadline = time.monotonic() + 120
        while True:  # every replica up, not only the first
            app = client.application()
            running = [r for r in app["deployments"][DEPLOYMENT].get("replicas", []) if r["state"] == "RUNNING"]
            if len(running) >= replicas:
                break
            assert time.monotonic() < deadline, app
            time.sleep(1)


def remove(settings: Settings, models: ServeModelConfig, timeout_s: float = 120) -> None:
    """Every application deleted, Serve itself left running (its controller and proxy): the next deploy starts
    replicas only, where a full shutdown costs ~30 s here and the next deploy a new controller."""
    empty = serving.local_config(settings, models)
    empty["applications"] = []
    with serving.ServeClient(settings) as client:
        client.deploy(empty)
        deadline = time.monotonic() + timeout_s
        while client.application() is not None:
            assert time.monotonic() < deadline, "the prediction app was never removed"
            time.sleep(1)
