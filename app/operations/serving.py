"""Deploying the prediction API to a Ray cluster through Ray Serve's REST API (the dashboard's
``/api/serve/applications/``), so the CLI and the Airflow DAG need no Ray import.

``serve_deployments/serve_config.yaml`` is the one Serve config: locally, http_options come from settings,
the replicas get this process's ``RISKRAY_*`` settings as environment, and the champion alias is resolved to
a version in ``user_config`` — so moving the alias and re-deploying changes only ``user_config``, which Serve
applies in place (``reconfigure``) without restarting a replica.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from app.config import ENV_PREFIX, PROJECT_ROOT, Settings
from app.decision import pair_text
from app.errors import UserError
from app.prediction_service import DEPLOYMENT
from app.registry import ModelVersion, Registry
from app.schemas import ServeModelConfig

CONFIG_PATH = PROJECT_ROOT / "serve_deployments" / "serve_config.yaml"
APP_NAME = "riskray"
PRODUCTION = {"min_replicas": 3, "max_replicas": 10}


class ServeError(UserError, RuntimeError):
    """Serve could not do what was asked; one line."""


def base_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG_PATH.read_text())


def _application(config: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in config["applications"] if a["name"] == APP_NAME)


def _deployment(config: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in _application(config)["deployments"] if d["name"] == DEPLOYMENT)


def deployment_options() -> dict[str, Any]:
    """The deployment's options from the config, for `Deployment.options` (the serving benchmark deploys with
    them): everything but its name, autoscaling and models, which the caller sets."""
    options = dict(_deployment(base_config()))
    for key in ("name", "autoscaling_config", "user_config"):
        options.pop(key, None)
    return options


def production_config(bounds: dict[str, int] = PRODUCTION) -> dict[str, Any]:
    """The same config for the KubeRay RayService: the cluster's replica bounds (production's by default), HTTP on
    all pod interfaces, a whole CPU per replica."""
    config = base_config()
    config["http_options"] = {**config["http_options"], "host": "0.0.0.0"}
    deployment = _deployment(config)
    deployment["autoscaling_config"].update(bounds)
    deployment["ray_actor_options"] = {**deployment.get("ray_actor_options", {}), "num_cpus": 1}
    return config


def local_config(settings: Settings, models: ServeModelConfig) -> dict[str, Any]:
    config = base_config()
    config["http_options"] = {**config["http_options"], "host": settings.ray_host, "port": settings.serve_port}
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    if env:
        _application(config)["runtime_env"] = {"env_vars": env}
    _deployment(config)["user_config"] = models.model_dump()
    return config


def resolve_models(settings: Settings, models: ServeModelConfig) -> ServeModelConfig:
    """Aliases replaced by the versions they point at now."""
    with Registry(settings) as registry:
        served = [registry.resolve(models.champion)]
        if models.challenger:
            served.append(registry.resolve(models.challenger))
    return models.model_copy(update={"champion": served[0].version,
                                     "challenger": served[1].version if len(served) > 1 else None,
                                     "decisions": "; ".join(_thresholds(v) for v in served)})


def _thresholds(version: ModelVersion) -> str:
    """A version's review/decline pair as user_config shows it (a version from before decisions: its threshold)."""
    if version.decision_error is not None:
        return f"v{version.version}: {version.decision_error}"  # the replica's load then says why, and keeps serving
    return pair_text(version.version, *version.pair)


class ServeClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = httpx.Client(base_url=f"{settings.ray_dashboard_url}/api/serve", timeout=30)

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServeError(f"Ray dashboard at {self.settings.ray_dashboard_url} is unreachable: {error} "
                             "(is the stack up? `riskray stack status`)") from None
        if response.status_code >= 400:
            raise ServeError(f"Serve answered {response.status_code}: {response.text[:300]}")
        return response

    def details(self) -> dict[str, Any]:
        return self._request("GET", "/applications/").json()

    def application(self) -> dict[str, Any] | None:
        return self.details().get("applications", {}).get(APP_NAME)

    def deployed_models(self) -> ServeModelConfig | None:
        app = self.application()
        if not app or not app.get("deployed_app_config"):
            return None
        for deployment in app["deployed_app_config"].get("deployments", []):
            if deployment.get("name") == DEPLOYMENT and deployment.get("user_config"):
                return ServeModelConfig.model_validate(deployment["user_config"])
        return None

    def deploy(self, config: dict[str, Any], attempts: int = 10) -> None:
        # The first PUT on a fresh head also starts Serve's controller and can answer 500 while it comes up.
        for attempt in range(attempts):
            try:
                self._request("PUT", "/applications/", json=config)
                return
            except ServeError as error:
                if "answered 5" not in str(error) or attempt == attempts - 1:
                    raise
                time.sleep(3)

    def shutdown(self, timeout_s: float = 180) -> None:
        """Delete the apps and wait until Serve is gone: the dashboard answers the DELETE after its own 30 s even
        while the controller is still stopping replicas, and a deploy sent then is accepted and lost."""
        self._request("DELETE", "/applications/", timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while (details := self.details()).get("applications") or details.get("controller_info"):
            if time.monotonic() > deadline:
                raise ServeError(f"Serve still shutting down after {timeout_s:.0f} s")
            time.sleep(1)

    def wait_running(self, timeout_s: float, say: Callable[[str], None]) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            app = self.application()
            status = app["status"] if app else "NOT_STARTED"
            if status != last:
                say(f"application {APP_NAME}: {status}")
                last = status
            if status == "RUNNING":
                return app
            if status == "DEPLOY_FAILED":
                raise ServeError(f"deploy failed: {(app or {}).get('message', '')[:500]}")
            if time.monotonic() > deadline:
                raise ServeError(f"application {APP_NAME} not running after {timeout_s:.0f} s (status {status})")
            time.sleep(1)


def deploy(settings: Settings, models: ServeModelConfig, say: Callable[[str], None],
           timeout_s: float = 300) -> ServeModelConfig:
    resolved = resolve_models(settings, models)
    with ServeClient(settings) as client:
        client.deploy(local_config(settings, resolved))
        client.wait_running(timeout_s, say)
    return resolved


def reload(settings: Settings, say: Callable[[str], None], follow_alias: bool = True
           ) -> tuple[ServeModelConfig, ServeModelConfig] | None:
    """Point the running app at the champion alias's current version (``follow_alias``; else the versions it
    serves stay) and the served versions' current thresholds, in place. None when Serve is not running riskray.
    Returns the models (before, after); equal: nothing to do."""
    with ServeClient(settings) as client:
        current = client.deployed_models()
        if current is None:
            return None
        # the champion alias now, and the served versions' thresholds now (re-chosen ones reload in place too)
        models = resolve_models(settings, current.model_copy(update={"champion": "champion"}) if follow_alias
                                else current)
        if models == current:
            return current, current
        # Only user_config changes: the deployed app's runtime_env, replicas and options stay as they are, so the
        # replicas reconfigure in place, whoever calls this (a Ray job's environment is not the deployer's).
        app_config = client.application()["deployed_app_config"]  # type: ignore[index]
        _deployment({"applications": [app_config]})["user_config"] = models.model_dump()
        config = local_config(settings, models)
        config["applications"] = [app_config]
        client.deploy(config)
        client.wait_running(300, say)
    return current, models

