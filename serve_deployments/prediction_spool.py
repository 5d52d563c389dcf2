"""The prediction log's write-ahead spool: every answered prediction is on local disk before its answer leaves, so
a replica killed outright (SIGKILL, the OOM killer) loses none of the rows still waiting in its memory.

Each process appends length-prefixed pickles of its row batches to a segment file of its own (``<pid>-<tag>.seg``;
one ``os.write``, no fsync: the rows survive the process, not the machine). When the log writes its buffer to
PostgreSQL it starts a new segment; once the COPY has committed, the segments it covered are deleted. A replica
that starts adopts the segments of processes that no longer exist (renaming one first, so two replicas never adopt
the same) and writes their rows with its own. A replica killed between a COPY's commit and the deletion of its
segments (microseconds) would have those rows written twice: at-least-once, by that window.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import struct
import uuid
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)
_LENGTH = struct.Struct("<I")


class Spool:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._tag = uuid.uuid4().hex[:8]
        self._count = 0
        self.path = self._next_path()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _next_path(self) -> Path:
        self._count += 1
        return self.folder / f"{os.getpid()}-{self._tag}-{self._count}.seg"

    def write(self, rows: list[Any]) -> None:
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        os.write(self._fd, _LENGTH.pack(len(data)) + data)

    def rotate(self) -> Path:
        """Start a new segment; returns the finished one (delete it once its rows are in the database)."""
        finished = self.path
        os.close(self._fd)
        self.path = self._next_path()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return finished

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self.path.unlink(missing_ok=True)

    def adopt_orphans(self) -> tuple[list[Any], list[Path]]:
        """Rows of the segments whose process is gone, and the adopted files (delete them once written)."""
        rows: list[Any] = []
        adopted: list[Path] = []
        for segment in sorted(self.folder.glob("*.seg")):
            owner = segment.name.split("-", 1)[0]
            if not owner.isdigit() or int(owner) == os.getpid() or psutil.pid_exists(int(owner)):
                continue
            claimed = segment.with_name(f"{os.getpid()}-adopted-{segment.name}")
            try:
                segment.rename(claimed)  # atomic: the replica whose rename succeeds owns it
            except FileNotFoundError:
                continue
            rows.extend(read(claimed))
            adopted.append(claimed)
        if rows:
            logger.warning("prediction log: %d rows of a stopped replica recovered from %d spool segments",
                           len(rows), len(adopted))
        return rows, adopted


def read(path: Path) -> list[Any]:
    """Every complete record of a segment; a record cut short (the process killed mid-write) is skipped."""
    data = path.read_bytes()
    rows: list[Any] = []
    offset = 0
    while offset + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if start + size > len(data):
            break
        rows.extend(pickle.loads(data[start:start + size]))
        offset = start + size
    return rows
