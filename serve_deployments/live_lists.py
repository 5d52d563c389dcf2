"""The allow and deny lists as a replica applies them: the live entries (``app.lists``), re-read from the feature
store every ``serve_lists_refresh_s`` by a background thread, so a change applies within seconds on every replica,
without a redeploy, and a request never waits for the database. A failed read keeps the last lists (logged)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from app import lists
from app.config import Settings
from app.lists import ListEntry, ListView

logger = logging.getLogger("ray.serve")


class LiveLists:
    def __init__(self, settings: Settings, read: Callable[[Settings], list[ListEntry]] = lists.live) -> None:
        self.settings = settings
        self._read = read
        self.view = ListView([])
        self.error: str | None = None
        self._stopped = threading.Event()
        # the background read and a POST's own refresh must not interleave: an older read finishing last would put
        # the lists from before a change back
        self._refreshing = threading.Lock()
        self.refresh()  # a replica answers its first request with the lists already applied
        self._thread = threading.Thread(target=self._run, name="live-lists", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        with self._refreshing:
            try:
                self.view = ListView(self._read(self.settings))  # one assignment: a request sees old or new lists
                self.error = None
            except Exception as error:  # the database is down: the last lists keep applying
                said = str(error).strip()
                self.error = said.splitlines()[0][:200] if said else type(error).__name__
                logger.warning("lists: read failed, the last lists (%d entries) keep applying: %s", len(self.view),
                               self.error)

    def _run(self) -> None:
        while not self._stopped.wait(self.settings.serve_lists_refresh_s):
            self.refresh()

    def decide(self, customer_id: int, merchant_id: int, at: datetime) -> ListEntry | None:
        return self.view.decide(customer_id, merchant_id, at)

    def close(self) -> None:
        self._stopped.set()
