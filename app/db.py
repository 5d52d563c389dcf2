"""The pooled PostgreSQL access every package uses.

One ``ThreadedConnectionPool`` per process (per PID, so a forked Ray or Spark worker never shares a socket with
its parent), sized from settings. Connections come out of :func:`connection` as a context manager that commits
on success and rolls back on error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2.pool import ThreadedConnectionPool

from app.config import Settings, get_settings

_pools: dict[tuple[int, str, int, int], ThreadedConnectionPool] = {}
_lock = threading.Lock()


def get_pool(settings: Settings | None = None) -> ThreadedConnectionPool:
    settings = settings or get_settings()
    dsn = settings.postgres_dsn()
    key = (os.getpid(), dsn, settings.postgres_pool_min, settings.postgres_pool_max)
    with _lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = ThreadedConnectionPool(settings.postgres_pool_min, settings.postgres_pool_max, dsn)
            _pools[key] = pool
        return pool


@contextmanager
def connection(settings: Settings | None = None) -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back on error."""
    pool = get_pool(settings)
    conn = pool.getconn()
    broken = False
    try:
        with conn:  # psycopg2: commit on success, rollback on exception
            yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        broken = True
        raise
    finally:
        pool.putconn(conn, close=broken or conn.closed != 0)


def ping(settings: Settings | None = None) -> None:
    """Raise unless the feature store answers a trivial query."""
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
