"""Training/serving parity: for the same transactions, the model inputs training builds from raw transactions
(app.point_in_time) equal those serving builds from the feature store the real stream filled
(app.feature_store.history_for), both through app.model_inputs."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import db
from app.config import Settings
from app.feature_store import history_for
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES, RAW_COLUMNS, model_inputs
from app.point_in_time import history_frame
from streaming.simulator import Simulator, SimulatorConfig, message_values

from .stream_harness import StreamHarness

pytestmark = pytest.mark.integration

LABEL_DELAY_DAYS = 2
DAYS = 6


@pytest.fixture()
def harness(stack: Settings, tmp_path: Path) -> Iterator[StreamHarness]:
    # A watermark longer than the history: days of events arrive in any order and none is dropped as late,
    # so the store holds exactly what the raw rows say.
    job = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=str((DAYS + 2) * 86_400))
    yield job
    job.stop()


def _simulated(seed: int) -> pd.DataFrame:
    simulator = Simulator(SimulatorConfig(seed=seed, customers=150, merchants=40, compromised_cards_per_day=3,
                                          compromised_merchants_per_day=2))
    start = datetime.now(UTC) - timedelta(days=DAYS)
    frame = pd.concat(list(simulator.backfill(start, DAYS + 1)), ignore_index=True)
    frame = frame[frame["timestamp"] < pd.Timestamp(datetime.now(UTC))].drop(columns="scenario")
    offset = 10**12 + random.randrange(10**9) * 1000  # ids no other run or test uses
    frame["customer_id"] += offset
    frame["merchant_id"] += offset
    frame["transaction_id"] = [str(uuid.uuid4()) for _ in range(len(frame))]
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    return frame.sort_values("timestamp", ignore_index=True)


def _probes(frame: pd.DataFrame, cutoff: pd.Timestamp, count: int) -> pd.Index:
    """Transactions after the cutoff that are the first after it for both their customer and their merchant:
    the store (which holds only what came before the cutoff) then knows exactly their history."""
    later = frame[frame["timestamp"] >= cutoff]
    firsts = later.drop_duplicates("customer_id").index.intersection(later.drop_duplicates("merchant_id").index)
    return firsts[:count]


def test_serving_features_from_the_streamed_store_equal_the_training_features(
    stack: Settings, harness: StreamHarness
) -> None:
    frame = _simulated(seed=random.randrange(10**6))
    cutoff = frame["timestamp"].iloc[int(len(frame) * 0.97)]
    history = frame[frame["timestamp"] < cutoff]
    probes = _probes(frame, cutoff, 25)
    assert len(probes) >= 10

    harness.start()
    harness.send(zip((str(c).encode() for c in history["customer_id"]), message_values(history), strict=True))
    customers = [int(c) for c in history["customer_id"].unique()]

    def stored() -> bool:
        with db.connection(stack) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features WHERE customer_id = ANY(%s)",
                        (customers,))
            tiles = cur.fetchone()[0]
            cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM customer_countries "
                        "WHERE customer_id = ANY(%s)", (customers,))
            return tiles == len(history) and cur.fetchone()[0] == len(history)

    harness.wait_until(stored, 240, f"{len(history)} transactions in tiles and country counts")

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
                                   err_msg=name)
    for name in CATEGORICAL_FEATURES:
        assert list(serving[name]) == list(training[name]), name
    # the probes really exercise the windows: history in every long window, some labels past the delay
    assert (training["cust_txn_count_7d"] > 0).all()
    assert np.isfinite(training["merchant_fraud_rate_30d"]).any()
