from __future__ import annotations

import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus, JobSubmissionClient

from app.config import Settings

pytestmark = pytest.mark.integration


def test_job_submitted_through_the_job_api_succeeds(stack: Settings) -> None:
    client = JobSubmissionClient(stack.ray_dashboard_url)
    job_id = client.submit_job(
        entrypoint="python -c \"import ray; ray.init(); print('answer', ray.get(ray.remote(lambda: 6 * 7).remote()))\""
    )
    deadline = time.monotonic() + 180
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-2000:]
    assert "answer 42" in logs


def test_mlflow_server_logs_and_reads_back_a_run(stack: Settings, tmp_path) -> None:
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(f"riskray-test-{uuid.uuid4().hex[:8]}")
    note = tmp_path / "note.txt"
    note.write_text("hello from riskray")
    with mlflow.start_run() as run:
        mlflow.log_param("max_depth", 6)
        mlflow.log_metric("auc", 0.93)
        mlflow.log_artifact(str(note))

    client = MlflowClient(stack.mlflow_tracking_uri)
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.experiment_id == experiment.experiment_id
    assert fetched.data.params == {"max_depth": "6"}
    assert fetched.data.metrics == {"auc": 0.93}
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="note.txt",
                                                     dst_path=str(tmp_path / "dl"))
    assert Path(downloaded).read_text() == "hello from riskray"
