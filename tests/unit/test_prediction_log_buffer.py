"""The prediction log while the database is down (serve_deployments/prediction_log.py): rows wait in the bounded
buffer, in order, and only what does not fit is counted as dropped. The database here is a loopback port nothing
listens on, a real refused connection; the outage-and-recovery against the real PostgreSQL is
tests/integration/test_serving.py's restart test."""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from serve_deployments import prediction_spool
from serve_deployments.prediction_log import LoggedPrediction, PredictionLog

AT = datetime(2026, 12, 5, tzinfo=UTC)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rows(first: int, count: int) -> list[LoggedPrediction]:
    return [LoggedPrediction(None, first + i, 1, "1", "champion", 0.5, 0, 1.0, False, AT) for i in range(count)]


def _log(dropped: list[tuple[int, str]], bound: int, spool: Path | None = None) -> PredictionLog:
    # the writer thread only wakes on a full flush (never here): each flush below is the test's own
    settings = Settings(postgres_port=_closed_port(), serve_log_buffer=bound, serve_log_flush_rows=10_000,
                        serve_log_flush_s=3600, postgres_connect_timeout_s=1, serve_log_spool=spool is not None,
                        serve_log_spool_work_dir=spool)
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



def test_a_replica_stopping_during_the_outage_leaves_its_rows_spooled_and_counts_none_dropped(
        tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    log = _log(dropped, bound=100, spool=tmp_path)
    log.append(_rows(0, 40))
    segment = log._spool.path  # type: ignore[union-attr]
    assert log.flush() is None
    log.close()
    assert dropped == []  # not lost: the next replica adopts the segment (test below) and writes them
    assert segment.exists() and segment.stat().st_size > 0


def _dead_pid() -> int:
    """The pid of a process that has exited (a replica killed outright, as far as its spool can tell)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_rows_of_a_killed_replica_are_recovered_from_its_spool_by_the_next_one(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    first = _log(dropped, bound=100, spool=tmp_path)
    first.append(_rows(0, 7))
    first.append(_rows(7, 5))
    segment = first._spool.path  # type: ignore[union-attr]
    # the replica dies without a word: its segment is all that is left, under its (now dead) pid
    orphan = segment.with_name(f"{_dead_pid()}-{segment.name.split('-', 1)[1]}")
    segment.rename(orphan)
    with orphan.open("ab") as cut:
        cut.write(b"\x40\x00\x00\x00half a record")  # killed mid-write: the torn record is skipped
    second = _log(dropped, bound=100, spool=tmp_path)
    try:
        assert [row.customer_id for row in second._buffer] == list(range(12))
        assert not orphan.exists()  # adopted: renamed to the new replica's name, gone once written
        assert second.flush() is None and second.waiting == 12  # the database is down: still waiting, still spooled
        assert len(list(tmp_path.rglob("*.seg"))) >= 2
    finally:
        second.close()
        first.close()


def test_a_live_replicas_spool_is_never_adopted(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    first = _log(dropped, bound=100, spool=tmp_path)
    first.append(_rows(0, 3))
    second = _log(dropped, bound=100, spool=tmp_path)  # same process: alive
    try:
        assert second.waiting == 0 and first.waiting == 3
    finally:
        second.close()
        first.close()


def test_a_spool_segment_reads_back_every_complete_record(tmp_path: Path) -> None:
    spool = prediction_spool.Spool(tmp_path)
    spool.write(_rows(0, 2))
    spool.write(_rows(2, 1))
    done = spool.rotate()
    assert [row.customer_id for row in prediction_spool.read(done)] == [0, 1, 2]
    spool.close()
