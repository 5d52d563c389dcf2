"""Background work's CPU weight on a shared machine: a cgroup (v1 ``cpu`` controller) with a low ``cpu.shares``.

Why a cgroup and not a priority: Linux's autogroup scheduling (Debian's default) makes every session its own
scheduling group, and PostgreSQL starts every backend in a session of its own. The backend that writes the stream's
micro-batch (and runs the running-total trigger) then weighs as much as all of supervisord's programs together, the
API's replicas among them, whatever its nice value or scheduling class; a priority reaches only inside a group.
A process in a cgroup of its own leaves autogroup, and the group's ``cpu.shares`` (1024 is a normal process's) sets
its weight against everything else. The stream job enters the group at start (the JVM and Spark's Python workers
inherit it) and moves the database sessions that write its batches into it as it opens them.

Local stack only: in Kubernetes the same separation is each pod's CPU request. Where the controller is missing or
not writable, nothing is moved and the reason is logged once (the stream still runs, at the priority it has).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.config import Settings

log = logging.getLogger(__name__)

GROUP = "riskray/background"


class BackgroundGroup:
    """The background group of ``settings`` (``RISKRAY_BACKGROUND_CPU_SHARES``; 0: none)."""

    def __init__(self, settings: Settings) -> None:
        self.shares = settings.background_cpu_shares
        self.path = Path(settings.cpu_cgroup_root) / GROUP
        self._placed: set[int] = set()
        self._unavailable: str | None = None if self.shares else "RISKRAY_BACKGROUND_CPU_SHARES is 0"

    @property
    def unavailable(self) -> str | None:
        """Why processes are not moved (None while they are)."""
        return self._unavailable

    def ensure(self) -> bool:
        """The group exists with its shares; False (the reason logged once) where it cannot."""
        if self._unavailable is not None:
            return False
        root = self.path.parent.parent
        if not (root / "cpu.shares").exists():  # not cgroup v1's cpu controller (a v2 machine, say): create nothing
            return self._give_up(f"no cgroup v1 cpu controller at {root}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            shares = self.path / "cpu.shares"
            if not shares.exists() or shares.read_text().strip() != str(self.shares):
                self.set_shares(self.shares)
        except OSError as error:
            return self._give_up(f"no CPU group at {self.path}: {error.strerror or error}")
        return True

    def set_shares(self, shares: int) -> None:
        """The group's weight now (the soak's A/B varies it on a running stack)."""
        (self.path / "cpu.shares").write_text(f"{shares}\n")

    def _give_up(self, reason: str) -> bool:
        self._unavailable = reason
        log.warning("background work keeps its priority only: %s", reason)
        return False

    def place(self, pid: int) -> bool:
        """Move ``pid`` (a process of this machine) into the group; once per pid."""
        if pid in self._placed:
            return True
        if not self.ensure():
            return False
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as error:  # gone already, or not ours to move: the rest still go
            log.warning("pid %d not moved into %s: %s", pid, self.path, error.strerror or error)
            return False
        self._placed.add(pid)
        return True

    def enter(self) -> bool:
        """Move this process (and so every child it starts afterwards) into the group."""
        return self.place(os.getpid())

    def remove(self) -> None:
        """The group gone once nothing is in it (the stack's stop); a group still in use stays."""
        for path in (self.path, self.path.parent):
            try:
                path.rmdir()
            except OSError:  # missing, or still holding a process or a group
                return

    def members(self) -> set[int]:
        """The pids in the group now (empty when there is none)."""
        try:
            return {int(line) for line in (self.path / "cgroup.procs").read_text().split()}
        except OSError:
            return set()
