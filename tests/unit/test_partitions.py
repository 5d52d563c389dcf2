"""Retention of the store's day partitions (app.partitions): never under what riskray reads back."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.partitions import RetentionTooShortError, minimum_retention, retention


def test_the_default_retention_keeps_everything_riskray_reads_back() -> None:
    settings = Settings()
    needs = minimum_retention(settings)
    assert retention(settings) == {"transactions": 180, "predictions": 90}
    # the label maturity curve reads transactions the horizon (90) plus the accuracy window (30) old
    assert needs["transactions"].days == 120 and "label maturity curve" in needs["transactions"].reader
    assert needs["predictions"].days == 30


def test_a_retention_under_what_a_reader_needs_is_refused_naming_the_variable_and_the_reader() -> None:
    settings = Settings(store_transactions_retention_days=60)
    with pytest.raises(RetentionTooShortError, match=r"RISKRAY_STORE_TRANSACTIONS_RETENTION_DAYS=60 .* 120 days "
                                                      r"the label maturity curve"):
        retention(settings)


def test_a_longer_training_period_raises_the_minimum() -> None:
    settings = Settings(train_days=120, store_transactions_retention_days=150)
    with pytest.raises(RetentionTooShortError, match="training"):
        retention(settings)
