"""Training/serving parity: for the same transactions, the model inputs training builds from raw transactions
(app.point_in_time) equal those serving builds from the feature store the real stream filled
(app.feature_store.history_for), both through app.model_inputs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app import db
from app.config import Settings
from app.feature_store import history_for
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES, RAW_COLUMNS, model_inputs
from app.point_in_time import history_frame

from .stream_harness import StreamHarness, probes_after, recent_transactions, stream_into_store

pytestmark = pytest.mark.integration

LABEL_DELAY_DAYS = 2
DAYS = 6
SEED = int(os.environ.get("RISKRAY_TEST_PARITY_SEED", "20261202"))  # a pinned world; the variable tries others


@pytest.fixture()
def harness(stack: Settings, tmp_path: Path) -> Iterator[StreamHarness]:
    # A watermark longer than the history: days of events arrive in any order and none is dropped as late,
    # so the store holds exactly what the raw rows say.
    job = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=str((DAYS + 2) * 86_400))
    yield job
    job.stop()


def test_serving_features_from_the_streamed_store_equal_the_training_features(
    stack: Settings, harness: StreamHarness
) -> None:
    frame = recent_transactions(SEED, DAYS, customers=150, merchants=40, block=1)
    cutoff = frame["timestamp"].iloc[int(len(frame) * 0.97)]
    history = frame[frame["timestamp"] < cutoff]
    probes = probes_after(frame, cutoff, 25)
    assert len(probes) >= 10, f"seed {SEED}: only {len(probes)} probes"
    harness.start()
    stream_into_store(harness, history)

    # training: everything in the file is history for the probes
    expected_history = history_frame(frame, LABEL_DELAY_DAYS).loc[probes]
    raw = {c: frame.loc[probes, c].to_numpy() for c in RAW_COLUMNS if c != "timestamp"}
    raw["timestamp"] = frame.loc[probes, "timestamp"].to_numpy(dtype="datetime64[us]")
    training = model_inputs(raw, {c: expected_history[c].to_numpy() for c in expected_history.columns})

    # serving: the store, as of each probe's event time
    p = frame.loc[probes]
    with db.connection(stack) as conn, conn.cursor() as cur:
        online = history_for(cur, p["customer_id"].tolist(), p["merchant_id"].tolist(), p["country"].tolist(),
                             [t.to_pydatetime() for t in p["timestamp"]], LABEL_DELAY_DAYS)
    serving = model_inputs(raw, online)

    for name in NUMERIC_FEATURES:
        np.testing.assert_allclose(serving[name], training[name], rtol=1e-7, atol=1e-9, equal_nan=True,
                                   err_msg=f"seed {SEED}: {name}")
    for name in CATEGORICAL_FEATURES:
        assert list(serving[name]) == list(training[name]), f"seed {SEED}: {name}"
    # the probes really exercise the windows: history in every long window, some labels past the delay
    assert (training["cust_txn_count_7d"] > 0).all(), f"seed {SEED}"
    assert np.isfinite(training["merchant_fraud_rate_30d"]).any(), f"seed {SEED}"
