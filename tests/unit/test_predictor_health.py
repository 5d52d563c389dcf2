"""The predictor names what keeps it from answering well: no model, or a feature store it cannot reach."""

from __future__ import annotations

import socket

from app.config import Settings
from serve_deployments.online_features import OnlineFeatures


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_store_is_reported_and_reads_degrade_instead_of_failing() -> None:
    settings = Settings(postgres_port=_closed_port(), serve_store_retry_s=60)
    features = OnlineFeatures(settings)
    assert features.ping().startswith("feature store unreachable (PostgreSQL ")
    from datetime import UTC, datetime

    history, degraded = features.history([1], [2], ["DE"], [datetime.now(UTC)])
    assert degraded and history["cust_total_count"][0] == 0
    # within the retry window the store is not asked again: the answer is immediate
    history, degraded = features.history([3], [4], ["DE"], [datetime.now(UTC)])
    assert degraded
