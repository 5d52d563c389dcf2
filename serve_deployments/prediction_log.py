"""Every prediction into ``predictions``, off the request path: requests append to a bounded in-memory buffer,
a background thread writes it in batches (when it holds ``serve_log_flush_rows`` rows or every
``serve_log_flush_s``) with one COPY. A failed write (the database is down) puts its batch back at the head of the
buffer and the writer tries again every ``serve_store_retry_s``, so an outage loses nothing while it fits in the
buffer; only rows beyond ``serve_log_buffer`` are dropped (the newest) and counted as ``overflow``. Nothing here
ever blocks or fails a request. Rows still buffered when the replica stops are tried once more; if that fails
they stay in the spool for the next replica, or, with the spool off, are counted as ``write_failed``.

Rows reach the buffer through a local write-ahead spool (serve_deployments/prediction_spool.py), so a replica
killed outright loses none: the next replica to start writes them.

Each row also carries the model inputs it was answered with (for drift, ``monitoring``): the request path only
keeps a reference to its batch's input arrays; the text of the arrays is built here, in the writer thread."""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg2

from app.config import Settings
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from serve_deployments.prediction_spool import Spool

logger = logging.getLogger(__name__)
COLUMNS = ("transaction_id", "customer_id", "merchant_id", "model_version", "variant", "fraud_probability",
           "is_fraud", "latency_ms", "features_degraded", "predicted_at", "event_time", "feature_set",
           "numeric_inputs", "categorical_inputs", "outcome")


@dataclass(frozen=True)
class BatchInputs:
    """The model inputs of one scored batch, shared by its rows: a (rows x NUMERIC_FEATURES) matrix and the
    categorical columns, as ``app.model_inputs.model_inputs`` returned them."""

    feature_set: str
    numeric: np.ndarray
    categorical: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, inputs: dict[str, np.ndarray], feature_set: str) -> BatchInputs:
        return cls(feature_set, np.column_stack([inputs[name] for name in NUMERIC_FEATURES]).astype(np.float32),
                   tuple(inputs[name] for name in CATEGORICAL_FEATURES))

    def csv_fields(self, row: int) -> str:
        """feature_set, numeric_inputs, categorical_inputs of one row as CSV fields (arrays quoted)."""
        numbers = ",".join("NaN" if v != v else repr(float(v)) for v in self.numeric[row])
        labels = ",".join(f'""{c[row]}""' for c in self.categorical)  # letters only (schema), quoted for ''
        return f'{self.feature_set},"{{{numbers}}}","{{{labels}}}"'


@dataclass(frozen=True)
class LoggedPrediction:
    transaction_id: str | None
    customer_id: int
    merchant_id: int
    model_version: str
    variant: str  # champion | challenger | shadow
    fraud_probability: float
    is_fraud: int
    latency_ms: float
    features_degraded: bool
    predicted_at: datetime
    event_time: datetime | None = None
    inputs: BatchInputs | None = None
    row: int = 0  # this prediction's row in ``inputs``
    outcome: str | None = None  # approve | review | decline (app.decision.OUTCOMES)

    def csv_line(self) -> str:
        head = (f"{self.transaction_id or ''},{self.customer_id},{self.merchant_id},{self.model_version},"
                f"{self.variant},{self.fraud_probability!r},{self.is_fraud},{self.latency_ms:.3f},"
                f"{'t' if self.features_degraded else 'f'},{self.predicted_at.isoformat()},"
                f"{self.event_time.isoformat() if self.event_time else ''}")
        tail = self.inputs.csv_fields(self.row) if self.inputs is not None else ",,"
        return f"{head},{tail},{self.outcome or ''}\n"


class PredictionLog:
    def __init__(self, settings: Settings, on_dropped: Callable[[int, str], None]) -> None:
        self.settings = settings
        self._buffer: deque[LoggedPrediction] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._on_dropped = on_dropped  # (rows, reason: overflow | write_failed)
        self._conn: psycopg2.extensions.connection | None = None
        self.written = 0
        self._spool: Spool | None = None
        self._pending: list[Path] = []  # spool segments whose rows are not in the database yet
        if settings.serve_log_spool:
            folder = settings.serve_spool_dir
            try:
                self._spool = Spool(folder)
                recovered, self._pending = self._spool.adopt_orphans()
                self._buffer.extend(recovered)
            except OSError as error:  # a log without its spool beats no replica
                logger.warning("prediction log: no spool in %s (%s); rows in memory only", folder, error)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, rows: list[LoggedPrediction]) -> None:
        with self._lock:
            room = self.settings.serve_log_buffer - len(self._buffer)
            kept = rows[:max(room, 0)]
            if self._spool is not None and kept:
                self._spool.write(kept)  # on local disk before the answers leave
            self._buffer.extend(kept)
            size = len(self._buffer)
        if len(kept) < len(rows):
            self._on_dropped(len(rows) - len(kept), "overflow")
        if size >= self.settings.serve_log_flush_rows:
            self._wake.set()

    def flush(self) -> int | None:
        """Write what is buffered now; returns rows written, None when the write failed (the rows stay)."""
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
            if batch and self._spool is not None:
                self._pending.append(self._spool.rotate())
        if not batch:
            return 0
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg2.connect(self.settings.postgres_dsn())
            buffer = io.StringIO("".join(row.csv_line() for row in batch))
            with self._conn, self._conn.cursor() as cur:
                cur.copy_expert(f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)
            self.written += len(batch)
            with self._lock:  # committed: what the spool held for these rows goes
                done, self._pending = self._pending, []
            for segment in done:
                segment.unlink(missing_ok=True)
            return len(batch)
        except psycopg2.Error as error:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            with self._lock:  # back in front of what arrived meanwhile; beyond the bound the newest go
                self._buffer.extendleft(reversed(batch))
                excess = len(self._buffer) - self.settings.serve_log_buffer
                for _ in range(max(excess, 0)):
                    self._buffer.pop()
                waiting = len(self._buffer)
            logger.warning("prediction log: write failed, %d rows wait for the database: %s", waiting,
                           str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__)
            if excess > 0:
                self._on_dropped(excess, "overflow")
            return None

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.settings.serve_log_flush_s)
            self._wake.clear()
            if self.flush() is None:  # the database is down: wait before the next try, however full the buffer
                self._stopped.wait(self.settings.serve_store_retry_s)

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=10)
        if self.flush() is None:
            waiting = self.waiting
            with self._lock:
                self._buffer.clear()
            if self._spool is None:
                self._on_dropped(waiting, "write_failed")  # nowhere else to keep them: lost, and counted
            # else not lost: the segment stays, and the next replica to start adopts it and writes them
            return
        if self._spool is not None:
            self._spool.close()
