"""Model-registry helpers: which version an alias points at, and moving ``champion`` forward and back.

MLflow's REST API over httpx rather than the MLflow client: the CLI, the Serve replicas (which poll the alias)
and the Airflow DAG stay light. Aliases, not the deprecated stages: ``challenger`` = just trained,
``champion`` = serving. Every promotion appends the replaced champion to the registered model's
``champion_history`` tag, so ``rollback`` can move the alias back, repeatedly.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from app import drift_reference
from app.config import Settings
from app.decision import DECISION_DIR, DECISION_TAG, HOLDOUT_FILE, Decision
from app.drift_reference import DriftReference
from app.errors import UserError
from app.model_artifact import (
    CALIBRATION_ARTIFACT,
    DEFAULT_THRESHOLD,
    MODEL_FILE,
    PREPROCESSOR_ARTIFACT,
    THRESHOLD_TAG,
    ModelFiles,
    ScoringModel,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
TAG_LIMIT = 5000  # MLflow's longest tag value


class RegistryError(UserError, RuntimeError):
    """The registry cannot do what was asked; the message says why in one line."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    source: str
    aliases: tuple[str, ...]
    threshold: float  # the decision threshold chosen at training (tag 'threshold'), DEFAULT_THRESHOLD if unset
    decision: Decision | None = None  # the review/decline pair (tag 'decision'); None: a version from before them
    decision_error: str | None = None  # a 'decision' tag that is not one: the version cannot serve until fixed

    @property
    def pair(self) -> tuple[float, float]:
        """(review_at, decline_at) as serving applies them; a version from before decisions declines at its
        threshold and reviews nothing."""
        if self.decision is None:
            return self.threshold, self.threshold
        return self.decision.review_at, self.decision.decline_at


def decision_tag(decision: Decision) -> str:
    """A decision as its tag's value, read back first: a tag no reader could parse is never written."""
    value = decision.model_dump_json()
    Decision.model_validate_json(value)
    return value


class Registry:
    def __init__(self, settings: Settings, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None
                 ) -> None:
        """``transport``: httpx's default (the network), or a stand-in MLflow in tests."""
        self.name = settings.registered_model_name
        self._root = settings.mlflow_tracking_uri
        self._http = httpx.Client(base_url=f"{self._root}/api/2.0/mlflow", timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RegistryError(f"MLflow at {self._http.base_url} is unreachable: {error}") from None
        if response.status_code in (400, 404):
            try:
                error = response.json()
            except ValueError:
                error = {}
            message = str(error.get("message", response.text))
            # a missing model, version or alias: MLflow says 404, RESOURCE_DOES_NOT_EXIST or "... not found"
            if (response.status_code == 404 or error.get("error_code") == "RESOURCE_DOES_NOT_EXIST"
                    or "not found" in message):
                raise LookupError(message)
        if response.status_code >= 400:
            raise RegistryError(f"MLflow answered {response.status_code}: {response.text[:300]}")
        return response.json()

    @staticmethod
    def _version(payload: dict) -> ModelVersion:
        tags = {t["key"]: t["value"] for t in payload.get("tags", [])}
        decision, error = None, None
        if DECISION_TAG in tags:
            try:
                decision = Decision.model_validate_json(tags[DECISION_TAG])
            except ValidationError as invalid:
                # kept, not raised: promote, rollback and `riskray thresholds --set` must still reach the version
                error = (f"version {payload['version']}'s '{DECISION_TAG}' tag is not a decision: "
                         f"{invalid.errors()[0]['msg']} (`riskray thresholds {payload['version']} --set` rewrites it)")
        return ModelVersion(payload["name"], str(payload["version"]), payload.get("run_id", ""),
                            payload.get("source", ""), tuple(payload.get("aliases", ())),
                            float(tags.get(THRESHOLD_TAG, DEFAULT_THRESHOLD)), decision, error)

    def by_alias(self, alias: str) -> ModelVersion | None:
        try:
            payload = self._call("GET", "/registered-models/alias", params={"name": self.name, "alias": alias})
        except LookupError:
            return None
        return self._version(payload["model_version"])

    def version(self, version: str) -> ModelVersion:
        try:
            payload = self._call("GET", "/model-versions/get", params={"name": self.name, "version": version})
        except LookupError:
            raise RegistryError(f"model {self.name} has no version {version}") from None
        return self._version(payload["model_version"])

    def _artifact(self, uri: str, path: str) -> bytes:
        """One file of an artifact location, through the MLflow server's artifact proxy."""
        content = self._optional_artifact(uri, path)
        if content is None:
            raise RegistryError(f"MLflow has no artifact {path} in {uri} (404)")
        return content

    def _optional_artifact(self, uri: str, path: str) -> bytes | None:
        """One file of an artifact location, None when MLflow has no such file (404)."""
        prefix = "mlflow-artifacts:"
        if not uri.startswith(prefix):
            raise RegistryError(f"artifact location {uri} is not served by the MLflow server")
        location = uri[len(prefix):].lstrip("/")
        try:
            response = self._http.get(f"{self._root}/api/2.0/mlflow-artifacts/artifacts/{location}/{path}")
        except httpx.HTTPError as error:
            raise RegistryError(f"MLflow artifact {path} unreachable: {error}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"MLflow could not serve artifact {location}/{path} ({response.status_code})")
        return response.content

    def download(self, version: ModelVersion) -> ModelFiles:
        """A model version's files (app.model_artifact's layout) and decision threshold."""
        if version.decision_error is not None:
            raise RegistryError(version.decision_error)
        model_uri = self._call("GET", "/model-versions/get-download-uri",
                               params={"name": self.name, "version": version.version})["artifact_uri"]
        run_uri = self._call("GET", "/runs/get", params={"run_id": version.run_id})["run"]["info"]["artifact_uri"]
        # versions registered before calibration have no file: they score raw, as they did
        calibration = self._optional_artifact(run_uri, CALIBRATION_ARTIFACT)
        return ModelFiles(
            version=version.version,
            booster=self._artifact(model_uri, MODEL_FILE),
            preprocessor=self._artifact(run_uri, PREPROCESSOR_ARTIFACT).decode(),
            threshold=version.threshold,
            calibration=None if calibration is None else calibration.decode(),
            decision=version.decision,
        )

    def holdout_scores(self, version: ModelVersion) -> bytes:
        """The held-out rows the version's decision was chosen on (Parquet: training.thresholds.holdout_frame)."""
        run_uri = self._call("GET", "/runs/get", params={"run_id": version.run_id})["run"]["info"]["artifact_uri"]
        content = self._optional_artifact(run_uri, f"{DECISION_DIR}/{HOLDOUT_FILE}")
        if content is None:
            raise RegistryError(f"version {version.version} was trained before decisions: it has no held-out scores "
                                "to choose thresholds on (retrain it)")
        return content

    def set_decision(self, version: str, decision: Decision) -> None:
        """A version's review/decline pair: promotion and rollback carry it, as they carry the version."""
        value = decision_tag(decision)
        if len(value) > TAG_LIMIT:
            raise RegistryError(f"a decision of {len(value):,} characters does not fit a tag ({TAG_LIMIT:,})")
        self.set_version_tag(version, DECISION_TAG, value)

    def drift_reference(self, version: ModelVersion) -> DriftReference:
        """The drift reference saved with the version at training."""
        run = self._call("GET", "/runs/get", params={"run_id": version.run_id})["run"]
        path = f"{drift_reference.ARTIFACT_DIR}/{drift_reference.FILE}"
        return DriftReference.model_validate_json(self._artifact(run["info"]["artifact_uri"], path))

    def run_metrics(self, version: ModelVersion) -> dict[str, float]:
        """The metrics of the training run that made the version (test_roc_auc, cv_auc_mean, ...)."""
        run = self._call("GET", "/runs/get", params={"run_id": version.run_id})["run"]
        return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", [])}

    def resolve(self, ref: str) -> ModelVersion:
        """An alias ('champion', 'challenger') or a version number."""
        if ref.isdigit():
            return self.version(ref)
        found = self.by_alias(ref)
        if found is None:
            raise RegistryError(f"model {self.name} has no alias '{ref}'")
        return found

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        self._call("POST", "/model-versions/set-tag",
                   json={"name": self.name, "version": version, "key": key, "value": value[:TAG_LIMIT]})

    def set_alias(self, alias: str, version: str) -> None:
        self._call("POST", "/registered-models/alias", json={"name": self.name, "alias": alias, "version": version})

    def _history(self) -> list[str]:
        try:
            model = self._call("GET", "/registered-models/get", params={"name": self.name})["registered_model"]
        except LookupError:
            raise RegistryError(f"no registered model {self.name}: train one first (riskray train)") from None
        tags = {t["key"]: t["value"] for t in model.get("tags", [])}
        return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]

    def _set_history(self, versions: list[str]) -> None:
        self._call("POST", "/registered-models/set-tag",
                   json={"name": self.name, "key": HISTORY_TAG, "value": ",".join(versions[-50:])})

    def promote(self, version: str | None = None) -> tuple[str | None, str]:
        """Move ``champion`` to ``version`` (default: the challenger). Returns (previous, new) versions."""
        history = self._history()
        if version is None:
            challenger = self.by_alias(CHALLENGER)
            if challenger is None:
                raise RegistryError(f"model {self.name} has no '{CHALLENGER}' alias: name a version to promote")
            version = challenger.version
        target = self.version(version)
        current = self.by_alias(CHAMPION)
        if current is not None and current.version == target.version:
            return current.version, target.version
        self.set_alias(CHAMPION, target.version)
        if current is not None:
            self._set_history([*history, current.version])
        return (current.version if current else None), target.version

    def rollback(self) -> tuple[str, str]:
        """Move ``champion`` back to the version it replaced last. Returns (from, to)."""
        history = self._history()
        current = self.by_alias(CHAMPION)
        if current is None or not history:
            raise RegistryError(f"model {self.name} has no earlier champion to roll back to")
        previous = history.pop()
        self.set_alias(CHAMPION, previous)
        self._set_history(history)
        return current.version, previous


def load_scoring_model(settings: Settings, ref: str, threads: int | None = None) -> ScoringModel:
    """A registered version, ready to score: ``ref`` is an alias ('champion') or a version number."""
    with Registry(settings) as registry:
        files = registry.download(registry.resolve(ref))
    return ScoringModel.from_files(files, threads)
