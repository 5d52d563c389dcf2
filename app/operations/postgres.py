"""The PostgreSQL server of the local stack: its own data directory, loopback only, two databases
(the feature store and MLflow's backend store) owned by the riskray role."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from app.config import Settings
from app.local_paths import runtime_dir
from app.operations.errors import StackError
from app.operations.supervisor import Program

SUPERUSER = "postgres"


def bin_dir(settings: Settings) -> Path:
    if settings.postgres_bin_dir:
        candidates = [settings.postgres_bin_dir]
    else:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
        candidates = found
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    raise StackError(
        "PostgreSQL server binaries not found (run `make bootstrap`, which installs them from Debian, "
        "or set RISKRAY_POSTGRES_BIN_DIR)"
    )


def home(settings: Settings) -> Path:
    """``<state>/postgres``, unless the server's OS user cannot reach the state folder (a checkout inside a
    private 0700 directory, say): then a folder of its own under /var/lib/riskray, named after the state folder,
    with ``<state>/postgres`` a link to it."""
    preferred = settings.state_dir / "postgres"
    user = _os_user(settings)
    if user is None or can_traverse(user, settings.state_dir):
        return preferred
    digest = hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:10]
    return Path("/var/lib/riskray") / digest


def data_dir(settings: Settings) -> Path:
    return home(settings) / "data"


def socket_dir(settings: Settings) -> Path:
    if home(settings) == settings.state_dir / "postgres":
        return runtime_dir(settings) / "postgres"
    return home(settings) / "run"


def can_traverse(user: str, directory: Path) -> bool:
    """Whether ``user`` may search every directory from / down to ``directory`` (the parts that exist)."""
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return True
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for part in [directory, *directory.parents]:
        if not part.exists():
            continue
        info = part.stat()
        if info.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _os_user(settings: Settings) -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the postgres OS user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(settings.postgres_os_user)
    except KeyError:
        raise StackError(
            f"running as root needs the OS user '{settings.postgres_os_user}' for PostgreSQL "
            "(installed with the Debian postgresql package; or set RISKRAY_POSTGRES_OS_USER)"
        ) from None
    return settings.postgres_os_user


def prepare(settings: Settings) -> None:
    """initdb on first start; make the data and socket directories the server's own."""
    data = data_dir(settings)
    sockets = socket_dir(settings)
    user = _os_user(settings)
    for directory in (home(settings), data, sockets):
        directory.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(directory, user, user)
    link = settings.state_dir / "postgres"
    if home(settings) != link and not link.is_symlink():
        link.symlink_to(home(settings))  # so the data is still found from the state folder
    data.chmod(0o700)
    if (data / "PG_VERSION").exists():
        return
    result = subprocess.run(
        [
            str(bin_dir(settings) / "initdb"),
            "-D", str(data),
            "-U", SUPERUSER,
            "--auth-local=trust",  # superuser only through our own socket directory
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ],
        user=user,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        raise StackError(f"initdb failed: {reason}")


def program(settings: Settings) -> Program:
    return Program(
        name="postgres",
        command=[
            str(bin_dir(settings) / "postgres"),
            "-D", str(data_dir(settings)),
            "-p", str(settings.postgres_port),
            "-k", str(socket_dir(settings)),
            "-c", f"listen_addresses={settings.postgres_host}",
            "-c", "max_connections=200",
            "-c", "shared_buffers=256MB",
            "-c", "logging_collector=off",
        ],
        user=_os_user(settings),
        stopsignal="INT",  # "fast" shutdown: roll back open transactions, exit cleanly
    )


def superuser_connection(settings: Settings, database: str = "postgres"):
    return psycopg2.connect(
        host=str(socket_dir(settings)), port=settings.postgres_port, user=SUPERUSER, dbname=database,
        connect_timeout=3,
    )


def create_database(settings: Settings, name: str, fresh: bool = False) -> Settings:
    """Database ``name`` owned by the riskray role (dropped first when ``fresh``); the settings that point at it.
    Scratch databases for tests and benchmarks live on the same server as the real one, never in it."""
    conn = superuser_connection(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if fresh:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(settings.postgres_user)))
    finally:
        conn.close()
    return settings.model_copy(update={"postgres_db": name})


def drop_database(settings: Settings, name: str) -> None:
    """Drop ``name``, closing whatever sessions still hold it (a Serve replica's pool, say)."""
    conn = superuser_connection(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def check(settings: Settings) -> None:
    conn = superuser_connection(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


def provision(settings: Settings) -> None:
    """Create (or update the password of) the riskray role and its databases. Idempotent."""
    conn = superuser_connection(settings)
    conn.autocommit = True
    role = sql.Identifier(settings.postgres_user)
    password = settings.postgres_password.get_secret_value()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.postgres_user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(role), (password,))
            for database in (settings.postgres_db, settings.mlflow_db):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role))
    finally:
        conn.close()
