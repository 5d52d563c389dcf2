from __future__ import annotations

import json
from pathlib import Path

from streaming.spark_job import LedgerName


def test_ledger_name_carries_the_checkpoint_id_so_a_new_checkpoint_never_matches_old_batches(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for checkpoint, checkpoint_id in ((old, "aaaa"), (new, "bbbb")):
        checkpoint.mkdir()
        (checkpoint / "metadata").write_text(json.dumps({"id": checkpoint_id}))
    assert str(LedgerName("transactions-raw", old)) == "transactions-raw@aaaa"
    assert str(LedgerName("transactions-raw", new)) == "transactions-raw@bbbb"
