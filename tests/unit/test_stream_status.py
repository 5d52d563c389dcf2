from __future__ import annotations

from pathlib import Path

from streaming.status import last_failure


def test_last_failure_reports_the_newest_query_failure_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    log.write_text(
        "INFO started\n"
        "StreamingQueryException: Query [id = 1] terminated with exception: [OLD_ERROR] first.\n"
        "INFO restarted\n"
        "StreamingQueryException: Query [id = 2] terminated with exception: [STATE_STORE_X] schema changed.\n"
    )
    assert last_failure(log) == "[STATE_STORE_X] schema changed."
    assert last_failure(tmp_path / "missing.log") is None


def test_a_failed_query_is_one_line_and_a_checkpoint_storage_fault_says_what_to_do() -> None:
    from pathlib import Path

    from streaming.spark_job import failure_message

    folder = Path("/state/checkpoints/stream/transactions")
    full = failure_message("transactions-raw", "[STREAM_FAILED] terminated with exception: java.io.IOException: "
                           "No space left on device SQLSTATE: XXKST\n=== Streaming Query ===", folder)
    assert full.startswith(f"query transactions-raw stopped: its checkpoint folder {folder} is full")
    assert "nothing is lost" in full and "\n" not in full
    read_only = failure_message("q", "java.nio.file.FileSystemException: java.io.IOException: Read-only file system",
                                folder)
    assert "is read-only" in read_only
    other = failure_message("q", "psycopg2 permission denied for table features\nmore", folder)
    assert other == "query q failed: psycopg2 permission denied for table features"
