"""The prediction log while the database is down (serve_deployments/prediction_log.py): rows wait in the bounded
buffer, in order, and only what does not fit is counted as dropped. The database here is a loopback port nothing
listens on, a real refused connection; the outage-and-recovery against the real PostgreSQL is
tests/integration/test_serving.py's restart test."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from app.config import Settings
from serve_deployments.prediction_log import LoggedPrediction, PredictionLog

AT = datetime(2026, 12, 5, tzinfo=UTC)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rows(first: int, count: int) -> list[LoggedPrediction]:
    return [LoggedPrediction(None, first + i, 1, "1", "champion", 0.5, 0, 1.0, False, AT) for i in range(count)]


def _log(dropped: list[tuple[int, str]], bound: int) -> PredictionLog:
    # the writer thread only wakes on a full flush (never here): each flush below is the test's own
    settings = Settings(postgres_port=_closed_port(), serve_log_buffer=bound, serve_log_flush_rows=10_000,
                        serve_log_flush_s=3600, postgres_connect_timeout_s=1)
    return PredictionLog(settings, lambda rows, reason: dropped.append((rows, reason)))


def test_a_failed_write_keeps_its_rows_in_order_and_drops_nothing_within_the_bound() -> None:
    dropped: list[tuple[int, str]] = []
    log = _log(dropped, bound=50)
    try:
        log.append(_rows(0, 30))
        assert log.flush() is None
        assert log.waiting == 30 and dropped == []
        log.append(_rows(30, 10))
        assert log.flush() is None and log.waiting == 40 and dropped == []
        assert [row.customer_id for row in log._buffer] == list(range(40))  # oldest first, as they came
    finally:
        log.close()
    assert dropped == [(40, "write_failed")]  # still down when the replica stops: counted, not silently gone


def test_beyond_the_bound_the_newest_rows_are_dropped_and_counted_as_overflow() -> None:
    dropped: list[tuple[int, str]] = []
    log = _log(dropped, bound=50)
    try:
        log.append(_rows(0, 45))
        log.append(_rows(45, 10))  # 5 do not fit
        assert dropped == [(5, "overflow")] and log.waiting == 50
        assert log.flush() is None and log.waiting == 50 and dropped == [(5, "overflow")]
        assert [row.customer_id for row in log._buffer] == list(range(50))
    finally:
        log.close()
