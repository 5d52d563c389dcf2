"""Ctrl-C and SIGTERM for the demo, never lost.

A signal handler's KeyboardInterrupt is raised wherever the main thread happens to be, and Python prints and drops
an exception raised inside a finalizer ("Exception ignored in ..."): the demo polls its services over HTTP and
XML-RPC, and an interrupt landing while a response object is collected was lost, so the demo ran on to its end. The
handler therefore also remembers the interrupt, and the demo checks it between its steps.
"""

from __future__ import annotations

import signal
import threading


class Interrupts:
    def __init__(self) -> None:
        self._seen = threading.Event()

    def install(self) -> None:
        """Ctrl-C and SIGTERM stop the demo however it was started: a shell's background job inherits SIGINT
        ignored, and Python keeps an inherited SIG_IGN instead of raising KeyboardInterrupt."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self._seen.set()
        raise KeyboardInterrupt

    @property
    def seen(self) -> bool:
        return self._seen.is_set()

    def check(self) -> None:
        """Raise the interrupt again if one came and was swallowed on its way."""
        if self._seen.is_set():
            raise KeyboardInterrupt


INTERRUPTS = Interrupts()
