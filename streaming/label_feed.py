"""Label events released as their report time comes: the simulator's live traffic carries no label, this sends them.

A producer of live transactions hands each batch to :meth:`LabelFeed.add` with its truth (``is_fraud``) before it
sends the rows without it; the feed turns the batch into label events by the delay model
(``streaming.label_delays``) and holds them until :meth:`LabelFeed.release` is called with a time at or past their
``reported_at``, then writes them to its sink (the ``labels`` topic). It also keeps what a report needs to say how
much of the truth is known: the ids of the events it sent and the true frauds it saw.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from streaming.label_delays import EVENT_COLUMNS, LabelDelayConfig, label_events


class EventSink(Protocol):  # streaming.sinks.KafkaSink on the labels topic
    def write(self, frame: pd.DataFrame) -> None: ...
    def flush(self, timeout_s: float = 60) -> None: ...
    def close(self) -> None: ...


class LabelFeed:
    def __init__(self, config: LabelDelayConfig, sink: EventSink) -> None:
        self.config = config
        self.sink = sink
        self._pending = pd.DataFrame(columns=list(EVENT_COLUMNS))
        self.sent_ids: list[str] = []
        self.frauds = pd.DataFrame({"transaction_id": pd.Series(dtype=str),
                                    "timestamp": pd.Series(dtype="datetime64[us, UTC]")})

    def add(self, transactions: pd.DataFrame) -> None:
        """Label events for these transactions (columns transaction_id, timestamp, is_fraud: the truth), held
        until their report time."""
        if transactions.empty:
            return
        events = label_events(transactions, self.config)
        self._pending = events if self._pending.empty else pd.concat([self._pending, events], ignore_index=True)
        fraud = transactions.loc[transactions["is_fraud"] == 1, ["transaction_id", "timestamp"]]
        self.frauds = pd.concat([self.frauds, fraud.astype({"transaction_id": str})], ignore_index=True)

    def without_labels(self, transactions: pd.DataFrame) -> pd.DataFrame:
        """:meth:`add` them, and return them as a live client sends them: without ``is_fraud``."""
        self.add(transactions)
        return transactions.drop(columns="is_fraud")

    def release(self, until: pd.Timestamp) -> int:
        """Write the held events reported at or before ``until`` to the sink; how many."""
        due = (self._pending["reported_at"] <= until).to_numpy()
        if not due.any():
            return 0
        events, self._pending = self._pending[due], self._pending[~due].reset_index(drop=True)
        events = events.sort_values(["reported_at", "label_id"], kind="stable")  # only what goes out is ordered
        self.sink.write(events)
        self.sent_ids.extend(events["label_id"].tolist())
        return len(events)

    @property
    def sent(self) -> int:
        return len(self.sent_ids)

    @property
    def held(self) -> int:
        """Events whose report time has not come yet."""
        return len(self._pending)
