"""The label as known at a time (app.labels), over data in memory: the rule the store's SQL applies too
(tests/integration/test_streaming.py and test_training.py pin that one)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from app.labels import known_in_frame, matured

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DELAY = 7


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=1000 + i, version=4)) for i in range(n)]


def _transactions(labels: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"transaction_id": _ids(len(labels)), "timestamp": pd.Timestamp(T0),
                         "is_fraud": labels})


def _event(i: int, transaction: int, is_fraud: int, after: timedelta) -> dict:
    return {"label_id": str(uuid.UUID(int=i, version=4)), "transaction_id": _ids(transaction + 1)[transaction],
            "is_fraud": is_fraud, "reported_at": pd.Timestamp(T0 + after)}


def _known(frame: pd.DataFrame, events: list[dict], after: timedelta) -> list[float]:
    return known_in_frame(frame, pd.DataFrame(events) if events else None, T0 + after, DELAY).tolist()


def test_a_label_inside_a_row_is_known_only_the_label_delay_after_its_transaction() -> None:
    frame = _transactions([1, 0, np.nan])
    assert np.isnan(_known(frame, [], timedelta(days=DELAY) - timedelta(seconds=1))).all()
    assert _known(frame, [], timedelta(days=DELAY))[:2] == [1, 0]
    assert np.isnan(_known(frame, [], timedelta(days=DELAY))[2]), "a row without a label has none"


def test_the_last_report_by_its_time_wins_whatever_the_order_events_arrive_in() -> None:
    frame = _transactions([np.nan, np.nan])
    events = [_event(2, 0, 0, timedelta(days=20)),  # arrives first, reported last: the dispute resolved
              _event(1, 0, 1, timedelta(days=5)),
              _event(3, 1, 1, timedelta(hours=3))]
    assert np.isnan(_known(frame, events, timedelta(hours=2))).all()
    assert _known(frame, events, timedelta(days=6)) == [1, 1]
    assert _known(frame, events, timedelta(days=20)) == [0, 1]


def test_an_event_reported_after_a_rows_own_label_supersedes_it_and_at_the_same_moment_the_event_wins() -> None:
    frame = _transactions([1, 1])
    events = [_event(1, 0, 0, timedelta(days=DELAY + 1)), _event(2, 1, 0, timedelta(days=DELAY))]
    assert _known(frame, events, timedelta(days=DELAY)) == [1, 0]
    assert _known(frame, events, timedelta(days=DELAY + 1)) == [0, 0]


def test_a_matured_period_counts_a_transaction_never_reported_as_legitimate_and_keeps_known_labels() -> None:
    assert matured(np.array([1.0, 0.0, np.nan])).tolist() == [1, 0, 0]
