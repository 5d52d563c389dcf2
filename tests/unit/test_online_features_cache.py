"""The request-time history cache: a card's part and a merchant's part are read and cached apart, so a merchant
shared by many transactions is read once per batch and per TTL. The store read itself is stubbed here (it is
tested against real PostgreSQL in tests/integration/test_feature_store.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from app.config import Settings
from app.model_inputs import HISTORY_COLUMNS
from serve_deployments.online_features import CARD_PART, MERCHANT_PART, OnlineFeatures

T = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)


class RecordingFeatures(OnlineFeatures):
    """Answers every read with the entity ids as values (a card's columns = its id, a merchant's = its id), and
    records what was asked; ``fail`` makes the next read fail as an unreachable store does."""

    def __init__(self) -> None:
        super().__init__(Settings(serve_feature_cache_ttl_s=60))
        self.reads: list[tuple[list, list]] = []
        self.fail = False

    def _fetch(self, customers, merchants, countries, times):  # type: ignore[override]
        self.reads.append((list(customers), list(merchants)))
        if self.fail:
            return None
        rows = np.zeros((len(customers), len(HISTORY_COLUMNS)))
        rows[:, CARD_PART] = np.array([c or 0 for c in customers], dtype=float)[:, None]
        rows[:, MERCHANT_PART] = np.array([m or 0 for m in merchants], dtype=float)[:, None]
        return rows


def _read(features: RecordingFeatures, pairs: list[tuple[int, int]]) -> tuple[dict, bool]:
    return features.history([c for c, _ in pairs], [m for _, m in pairs], ["DE"] * len(pairs), [T] * len(pairs))


def test_a_merchant_is_read_once_per_batch_and_then_comes_from_the_cache() -> None:
    features = RecordingFeatures()
    history, degraded = _read(features, [(1, 7), (2, 7), (3, 8)])
    assert not degraded
    assert features.reads == [([1, 2, 3], [7, None, 8])]
    assert list(history["cust_count_30d"]) == [1, 2, 3]
    assert list(history["merchant_count_30d"]) == [7, 7, 8]  # the second row got the first row's merchant read

    history, _ = _read(features, [(4, 7)])  # a new card at a known merchant: only the card is read
    assert features.reads[-1] == ([4], [None])
    assert (history["cust_count_30d"][0], history["merchant_count_30d"][0]) == (4, 7)

    history, _ = _read(features, [(1, 8)])  # both parts known: no read at all
    assert len(features.reads) == 2
    assert (history["cust_count_30d"][0], history["merchant_count_30d"][0]) == (1, 8)


def test_a_failed_read_answers_without_history_and_caches_nothing() -> None:
    features = RecordingFeatures()
    features.fail = True
    history, degraded = _read(features, [(1, 7)])
    assert degraded and history["cust_total_count"][0] == 0 and history["merchant_count_30d"][0] == 0
    features.fail = False
    history, degraded = _read(features, [(1, 7)])
    assert not degraded and features.reads[-1] == ([1], [7])
    assert history["merchant_count_30d"][0] == 7
