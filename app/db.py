"""The pooled PostgreSQL access every package uses.

One ``ThreadedConnectionPool`` per process (per PID, so a forked Ray or Spark worker never shares a socket with
its parent), sized from settings. Connections come out of :func:`connection` as a context manager that commits
on success and rolls back on error.

More concurrent users than the pool holds queue for a free connection up to ``postgres_pool_wait_s``, then get
:class:`PoolExhaustedError` naming the limit: bounded waiting, never a hang (psycopg2's own pool fails at once with a
bare "connection pool exhausted").
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2.pool import ThreadedConnectionPool

from app.config import Settings, get_settings
from app.errors import UserError

_pools: dict[tuple[int, str, int, int], tuple[ThreadedConnectionPool, threading.BoundedSemaphore]] = {}
_lock = threading.Lock()


class PoolExhaustedError(UserError, RuntimeError):
    """Every connection of this process's pool stayed in use for the whole wait."""


def _pool_and_slots(settings: Settings) -> tuple[ThreadedConnectionPool, threading.BoundedSemaphore]:
    dsn = settings.postgres_dsn()
    key = (os.getpid(), dsn, settings.postgres_pool_min, settings.postgres_pool_max)
    with _lock:
        entry = _pools.get(key)
        if entry is None or entry[0].closed:
            entry = (ThreadedConnectionPool(settings.postgres_pool_min, settings.postgres_pool_max, dsn),
                     threading.BoundedSemaphore(settings.postgres_pool_max))
            _pools[key] = entry
        return entry


def get_pool(settings: Settings | None = None) -> ThreadedConnectionPool:
    return _pool_and_slots(settings or get_settings())[0]


@contextmanager
def connection(settings: Settings | None = None) -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back on error."""
    settings = settings or get_settings()
    pool, slots = _pool_and_slots(settings)
    if not slots.acquire(timeout=settings.postgres_pool_wait_s):
        raise PoolExhaustedError(
            f"all {settings.postgres_pool_max} database connections of this process stayed in use for "
            f"{settings.postgres_pool_wait_s:g} s (RISKRAY_POSTGRES_POOL_MAX, RISKRAY_POSTGRES_POOL_WAIT_S)")
    try:
        conn = _usable_connection(pool, settings.postgres_pool_max)
        broken = False
        try:
            with conn:  # psycopg2: commit on success, rollback on exception
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True
            raise
        finally:
            pool.putconn(conn, close=broken or conn.closed != 0)
    finally:
        slots.release()


def _usable_connection(pool: ThreadedConnectionPool, attempts: int) -> psycopg2.extensions.connection:
    """A pooled connection whose server still answers: after a database restart the pool holds connections whose
    server is gone, and each would fail its caller once. One ``SELECT 1`` round trip (~0.1 ms on loopback), inside
    the caller's transaction; a dead connection is closed and the next one tried."""
    for _ in range(attempts):
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            return conn
        except psycopg2.Error:
            with contextlib.suppress(psycopg2.Error):
                conn.rollback()
            pool.putconn(conn, close=True)
    return pool.getconn()  # a new connection (or the error that says why there is none)


def ping(settings: Settings | None = None) -> None:
    """Raise unless the feature store answers a trivial query."""
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
