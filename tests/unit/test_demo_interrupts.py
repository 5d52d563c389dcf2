"""Ctrl-C during the demo is never lost, even when Python drops the KeyboardInterrupt on its way."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from app.cli.demo.interrupts import Interrupts


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    caught = Interrupts()
    caught.install()
    yield caught
    signal.signal(signal.SIGINT, handlers[0])
    signal.signal(signal.SIGTERM, handlers[1])


class _InterruptedWhileCollected:
    """Stands in for a response object whose close runs as it is collected, the moment Ctrl-C arrives."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside the finalizer, and Python drops its exception
            pass


def test_an_interrupt_swallowed_by_a_finalizer_is_raised_again_at_the_next_check(
        interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    _InterruptedWhileCollected()  # no KeyboardInterrupt comes out of this line
    assert dropped == [KeyboardInterrupt]  # Python's "Exception ignored in ..."
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_sigterm_stops_the_demo_like_ctrl_c(interrupts: Interrupts) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert interrupts.seen


def test_without_an_interrupt_the_check_passes(interrupts: Interrupts) -> None:
    interrupts.check()
    assert not interrupts.seen
