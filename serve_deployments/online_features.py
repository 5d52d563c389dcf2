"""Request-time history from the feature store: pooled, bounded in time, cached briefly, and never a reason to
fail or hang a prediction.

* One query per request or batch (``app.feature_store.history_matrix``) under a ``statement_timeout``.
* Small TTL caches, one for cards' history keyed by (customer, country, minute) and one for merchants' keyed by
  (merchant, minute): the tiles change at most once per stream trigger, so a repeat within the TTL gets the same
  answer for free, and a merchant shared by many cards is read once, not per transaction.
* When the store fails or is slow, the request is answered from request-supplied values and neutral defaults
  (no history) and flagged ``features_degraded``; for ``serve_store_retry_s`` afterwards the store is not asked
  at all, so an outage costs no request a connect timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import psycopg2
import psycopg2.pool

from app.config import Settings
from app.feature_store import history_matrix, prepare_history
from app.features import HISTORY, HISTORY_COLUMNS

logger = logging.getLogger(__name__)
CACHE_SIZE = 50_000
POOL_SIZE = 4  # connections kept open per replica; more requests than this wait (bounded) or degrade


class _StoreConnection(psycopg2.extensions.connection):
    """Remembers whether the history query is prepared on it (prepared statements live per connection), and
    runs in autocommit: a read is then one round trip, where psycopg2's implicit BEGIN and the closing ROLLBACK
    made it three (~170 of a single read's ~500 µs). A batch's ``SET LOCAL statement_timeout`` still holds, for
    the implicit transaction of the one multi-statement query it is sent in."""

    history_prepared = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.autocommit = True


# a transaction's history in two parts, cached apart: its merchant's windows, and its card's (the customer's)
MERCHANT_PART = np.array([i for i, w in enumerate(HISTORY) if w.entity == "merchant"])
CARD_PART = np.array([i for i, w in enumerate(HISTORY) if w.entity == "customer"])
EMPTY_ROW = np.array([w.empty for w in HISTORY])


def empty_history(rows: int) -> np.ndarray:
    """No history at all (rows x HISTORY_COLUMNS): what a first-seen customer looks like."""
    return np.tile(EMPTY_ROW, (rows, 1))


class OnlineFeatures:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ttl_s = settings.serve_feature_cache_ttl_s
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(POOL_SIZE)
        self._cards: OrderedDict[tuple, tuple[float, np.ndarray]] = OrderedDict()  # (customer, country, minute)
        self._merchants: OrderedDict[tuple, tuple[float, np.ndarray]] = OrderedDict()  # (merchant, minute)
        self._cache_lock = threading.Lock()
        self._down_until = 0.0
        self.last_error: str | None = None

    # --- connections --------------------------------------------------------------------------------------
    def _connection(self) -> psycopg2.extensions.connection:
        """A kept-open connection (the pool's min = max: psycopg2 closes connections returned above its minimum,
        and a connect costs ~7 ms, more than the query); the caller holds one of the POOL_SIZE slots."""
        with self._pool_lock:
            if self._pool is None:
                timeout_ms = self.settings.serve_store_timeout_ms
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    POOL_SIZE, POOL_SIZE, self.settings.postgres_dsn().replace(
                        f"connect_timeout={self.settings.postgres_connect_timeout_s}", "connect_timeout=1"),
                    # generic plan: re-planning the prepared history query per call cost more than running it;
                    # the generic plan read customer_countries by bitmap scan, ~2 ms per 1,000 rows slower than
                    # its primary-key index (these connections run nothing else)
                    options=f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on "
                            "-c plan_cache_mode=force_generic_plan -c enable_bitmapscan=off",
                    connection_factory=_StoreConnection,
                )
            return self._pool.getconn()

    def _release(self, conn: psycopg2.extensions.connection, broken: bool) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.putconn(conn, close=broken)

    def ping(self) -> str | None:
        """None when the store answers, else the reason."""
        if not self._slots.acquire(timeout=1.0):
            return None  # every connection is busy answering requests: the store is up
        try:
            return self._ping()
        finally:
            self._slots.release()

    def _ping(self) -> str | None:
        try:
            conn = self._connection()
        except psycopg2.Error as error:
            settings = self.settings
            where = f"PostgreSQL {settings.postgres_db} at {settings.postgres_host}:{settings.postgres_port}"
            return f"feature store unreachable ({where}): {str(error).strip().splitlines()[0]}"
        broken = False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            return None
        except psycopg2.Error as error:
            broken = True
            return f"feature store error: {str(error).strip().splitlines()[0]}"
        finally:
            self._release(conn, broken)

    # --- reads ------------------------------------------------------------------------------------------
    def history(self, customers: Sequence[int], merchants: Sequence[int], countries: Sequence[str],
                times: Sequence[datetime]) -> tuple[dict[str, np.ndarray], bool]:
        """(history columns, degraded). Never raises: a failing store yields empty history and degraded=True.

        The card's part (its tiles and countries) and the merchant's are cached and read apart: a merchant is
        shared by many cards, so within the TTL, and within one batch, its probes run once, not once per
        transaction. A part already known is asked for with a NULL id, which the store's probes skip."""
        n = len(customers)
        now = time.monotonic()
        minutes = [int(t.timestamp() // 60) for t in times]
        card_keys = [(c, k, m) for c, k, m in zip(customers, countries, minutes, strict=True)]
        merchant_keys = [(m, minute) for m, minute in zip(merchants, minutes, strict=True)]
        rows = np.empty((n, len(HISTORY_COLUMNS)))
        # per row: where its card part and merchant part come from — the cache (known), an earlier row of this
        # batch (copied after the read), or this read
        need_card: dict[tuple, int] = {}
        need_merchant: dict[tuple, int] = {}
        with self._cache_lock:
            for i in range(n):
                for key, part, cache, needed in ((card_keys[i], CARD_PART, self._cards, need_card),
                                                 (merchant_keys[i], MERCHANT_PART, self._merchants, need_merchant)):
                    hit = cache.get(key) if self.ttl_s > 0 else None
                    if hit is not None and now - hit[0] < self.ttl_s:
                        rows[i, part] = hit[1]
                    else:
                        needed.setdefault(key, i)
        missing = sorted({*need_card.values(), *need_merchant.values()})
        if not missing:
            return self._columns(rows), False
        asked_card, asked_merchant = set(need_card.values()), set(need_merchant.values())
        fetched = self._fetch([customers[i] if i in asked_card else None for i in missing],
                              [merchants[i] if i in asked_merchant else None for i in missing],
                              [countries[i] for i in missing], [times[i] for i in missing])
        degraded = fetched is None
        if fetched is None:
            fetched = empty_history(len(missing))
        at = {i: j for j, i in enumerate(missing)}
        for i in range(n):  # every row whose part was read, by itself or by an earlier row with the same key
            if card_keys[i] in need_card:
                rows[i, CARD_PART] = fetched[at[need_card[card_keys[i]]], CARD_PART]
            if merchant_keys[i] in need_merchant:
                rows[i, MERCHANT_PART] = fetched[at[need_merchant[merchant_keys[i]]], MERCHANT_PART]
        if self.ttl_s > 0 and not degraded:
            with self._cache_lock:
                for cache, needed, part in ((self._cards, need_card, CARD_PART),
                                            (self._merchants, need_merchant, MERCHANT_PART)):
                    for key, i in needed.items():
                        cache[key] = (now, fetched[at[i], part])
                    while len(cache) > CACHE_SIZE:
                        cache.popitem(last=False)
        return self._columns(rows), degraded

    @staticmethod
    def _columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: rows[:, k] for k, name in enumerate(HISTORY_COLUMNS)}

    def _fetch(self, customers: list[int | None], merchants: list[int | None], countries: list[str],
               times: list[datetime]) -> np.ndarray | None:
        if time.monotonic() < self._down_until:
            return None
        if not self._slots.acquire(timeout=self.settings.serve_store_timeout_ms / 1000):
            return None  # all connections busy for longer than the read budget: answer without the store
        try:
            return self._fetch_with_slot(customers, merchants, countries, times)
        finally:
            self._slots.release()

    def _timeout_ms(self, rows: int) -> int | None:
        """The read budget for a batch of ``rows``; None (the connection's per-request default) for one row."""
        if rows <= 1:
            return None
        return round(self.settings.serve_store_timeout_ms + rows * self.settings.serve_store_timeout_per_row_ms)

    def _fetch_with_slot(self, customers: list[int | None], merchants: list[int | None], countries: list[str],
                         times: list[datetime]) -> np.ndarray | None:
        conn = None
        broken = False
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                if not conn.history_prepared:  # once per connection; planning may take longer than a read
                    # the longer budget ends with the PREPARE's own query, even when the PREPARE fails
                    prepare_history(cur, timeout_ms=5000)
                    conn.history_prepared = True
                history = history_matrix(cur, customers, merchants, countries, times, prepared=True,
                                         timeout_ms=self._timeout_ms(len(customers)))
            self.last_error = None
            return history
        except psycopg2.Error as error:
            broken = isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
            self.last_error = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self._down_until = time.monotonic() + self.settings.serve_store_retry_s
            logger.warning("feature store read failed, answering degraded for %.0f s: %s",
                           self.settings.serve_store_retry_s, self.last_error)
            return None
        finally:
            if conn is not None:
                self._release(conn, broken)
