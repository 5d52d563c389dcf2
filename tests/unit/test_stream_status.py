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
