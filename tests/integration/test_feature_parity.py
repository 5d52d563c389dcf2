"""Training/serving parity: for the same transactions, the model inputs training builds from raw transactions
(app.point_in_time) equal those serving builds from the feature store the real stream filled
(app.feature_store.history_for), both through app.model_inputs — also for customers whose history starts before
the training snapshot does, and with label events arriving late and out of order (before their transaction, an
earlier report after a later one, reports after the probes)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import db
from app.config import Settings
from app.feature_store import history_for
from app.features import history_span
from app.labels import row_fraud_reports
from app.model_inputs import CATEGORICAL_FEATURES, NUMERIC_FEATURES, RAW_COLUMNS, model_inputs
from app.point_in_time import history_frame, with_counts_before
from training.data import country_counts_before, load_fraud_reports

from .stream_harness import WORLD_END, StreamHarness, probes_after, recent_transactions, stream_into_store

pytestmark = pytest.mark.integration

LABEL_DELAY_DAYS = 2
DAYS = 6
# Older than any day window of the probes reaches (history_span): only the customers' lifetime country counts see
# these, and a training snapshot (which reads history_span days back) does not hold them.
OLD_DAYS = DAYS + history_span() + 1
SEED = int(os.environ.get("RISKRAY_TEST_PARITY_SEED", "20261202"))  # a pinned world; the variable tries others


@pytest.fixture()
def harness(stack: Settings, tmp_path: Path) -> Iterator[StreamHarness]:
    # A watermark longer than the history, old transactions included: days of events arrive in any order and none
    # is dropped as late, so the store holds exactly what the raw rows say.
    job = StreamHarness(stack, tmp_path, RISKRAY_STREAM_WATERMARK_SECONDS=str((OLD_DAYS + 2) * 86_400),
                        RISKRAY_LABEL_DELAY_DAYS=str(LABEL_DELAY_DAYS))
    yield job
    job.stop()


def older_transactions(frame: pd.DataFrame, probes: pd.Index) -> pd.DataFrame:
    """Transactions of the probes' customers OLD_DAYS before the world's end: for every other customer many in a
    foreign country (their most used country is then one the snapshot never shows), for the rest a few in the
    probe's own country."""
    rng = np.random.default_rng(SEED)
    start = pd.Timestamp(WORLD_END - timedelta(days=OLD_DAYS))
    rows = []
    for i, probe in enumerate(frame.loc[probes].itertuples(index=False)):
        foreign = i % 2 == 0
        count = 60 if foreign else 5
        country = ("US" if probe.country != "US" else "DE") if foreign else probe.country
        rows.append(pd.DataFrame({
            **{name: getattr(probe, name) for name in frame.columns},
            "transaction_id": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(count)],
            "timestamp": start + pd.to_timedelta(np.arange(count) * 7 + i, unit="min"),
            "country": country, "is_fraud": 0,
        }))
    old = pd.concat(rows, ignore_index=True)[list(frame.columns)]
    old["timestamp"] = old["timestamp"].astype("datetime64[us, UTC]")
    return old


def _event(transaction: pd.Series, is_fraud: int, source: str, reported_at: pd.Timestamp, n: int) -> dict:
    return {"label_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"parity:{SEED}:{n}")),  # ids no other test uses
            "transaction_id": transaction.transaction_id,
            "is_fraud": is_fraud, "source": source, "reported_at": reported_at}


def label_events(history: pd.DataFrame, probes: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, ...]:
    """Label events for history transactions at the probes' merchants, in three sends: before their transactions
    are streamed (they wait for them), a later report before an earlier one of the same transaction, and the rest
    (fraud reports of legitimate rows, a dispute resolved as legitimate, reports after every probe)."""
    rng = np.random.default_rng(SEED)
    at_probes = history[history["merchant_id"].isin(probes["merchant_id"])]
    settled = at_probes["timestamp"] < cutoff - pd.Timedelta(days=2)  # reported (within 40 h) before the cutoff
    legit = at_probes[(at_probes["is_fraud"] == 0) & settled].sample(12, random_state=SEED)
    fraud = at_probes[at_probes["is_fraud"] == 1].head(3)
    after_probes = probes["timestamp"].max() + pd.Timedelta(hours=1)
    hours = pd.to_timedelta(rng.integers(1, 40, size=len(legit)), unit="h")
    early, late = [], []
    for i, (row, hour) in enumerate(zip(legit.itertuples(index=False), hours, strict=True)):
        (early if i < 4 else late).append(_event(row, 1, "dispute", row.timestamp + hour, i))  # four wait
    late.append(_event(next(legit.iloc[5:6].itertuples(index=False)), 0, "confirmed_legitimate",
                       cutoff - pd.Timedelta(minutes=1), 20))  # a resolved dispute: its report still counted
    late += [_event(row, 1, "chargeback", after_probes, 30 + i)  # known only after every probe
             for i, row in enumerate(legit.iloc[-2:].itertuples(index=False))]
    # an in-row fraud: a chargeback a day after its row label, then (arriving later) an analyst an hour after it
    later = [_event(row, 1, "chargeback", row.timestamp + pd.Timedelta(days=LABEL_DELAY_DAYS + 1), 40 + i)
             for i, row in enumerate(fraud.itertuples(index=False))]
    earlier = [_event(row, 1, "analyst", row.timestamp + pd.Timedelta(hours=1), 50 + i)
               for i, row in enumerate(fraud.itertuples(index=False))]
    return pd.DataFrame(early), pd.DataFrame(later), pd.DataFrame(earlier + late)


def first_reports(transactions: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """An independent reading of the rule: each transaction's first fraud report, rows' labels and events alike."""
    reports = pd.concat([
        row_fraud_reports(transactions, LABEL_DELAY_DAYS),
        events[events["is_fraud"] == 1].merge(transactions[["transaction_id", "merchant_id"]], on="transaction_id")
        [["transaction_id", "merchant_id", "reported_at"]]])
    reports["reported_at"] = pd.to_datetime(reports["reported_at"], utc=True)
    first = reports.sort_values("reported_at").drop_duplicates("transaction_id")
    return first[["merchant_id", "reported_at"]].sort_values(["merchant_id", "reported_at"], ignore_index=True)


def test_serving_features_from_the_streamed_store_equal_the_training_features(
    stack: Settings, harness: StreamHarness
) -> None:
    frame = recent_transactions(SEED, DAYS, customers=150, merchants=40, block=1)
    cutoff = frame["timestamp"].iloc[int(len(frame) * 0.97)]
    history = frame[frame["timestamp"] < cutoff]
    probes = probes_after(frame, cutoff, 25)
    assert len(probes) >= 10, f"seed {SEED}: only {len(probes)} probes"
    old = older_transactions(frame, probes)
    waiting, later, rest = label_events(history, frame.loc[probes], cutoff)
    harness.send_labels(waiting)  # before their transactions
    harness.start()
    harness.send_labels(later)
    stream_into_store(harness, pd.concat([old, history], ignore_index=True))
    harness.send_labels(rest)
    harness.wait_until(harness.caught_up, 120, "every query past every message")
    events = pd.concat([waiting, later, rest], ignore_index=True)

    # training: the snapshot is ``frame`` (everything in it is history for the probes; the old transactions are
    # not in it), with the store's country counts from before it, read as training.data.load_from_store reads them
    first = frame["timestamp"].min()
    with db.connection(stack) as conn, conn.cursor() as cur:
        before = country_counts_before(cur, first.to_pydatetime(), frame["customer_id"].unique().tolist())
    assert before["transaction_count"].sum() == len(old), f"seed {SEED}: the old transactions, counted before"
    # the merchants' fraud reports as training reads them from the store (by report time, before the probes)
    until = (frame.loc[probes, "timestamp"].max() + pd.Timedelta(minutes=1)).to_pydatetime()
    reports = load_fraud_reports(stack.model_copy(update={"label_delay_days": LABEL_DELAY_DAYS}),
                                 first.to_pydatetime(), until)
    stored = pd.concat([old, history], ignore_index=True)
    oracle = first_reports(stored, events)
    oracle = oracle[oracle["reported_at"] < pd.Timestamp(until)].reset_index(drop=True)
    reports["reported_at"] = pd.to_datetime(reports["reported_at"], utc=True)
    pd.testing.assert_frame_equal(reports.sort_values(["merchant_id", "reported_at"], ignore_index=True), oracle,
                                  check_dtype=False, obj=f"seed {SEED}: the store's first fraud reports")
    expected_history = history_frame(with_counts_before(frame, before), LABEL_DELAY_DAYS, reports).loc[probes]
    raw = {c: frame.loc[probes, c].to_numpy() for c in RAW_COLUMNS if c != "timestamp"}
    raw["timestamp"] = frame.loc[probes, "timestamp"].to_numpy(dtype="datetime64[us]")
    training = model_inputs(raw, {c: expected_history[c].to_numpy() for c in expected_history.columns})

    # serving: the store, as of each probe's event time
    p = frame.loc[probes]
    with db.connection(stack) as conn, conn.cursor() as cur:
        online = history_for(cur, p["customer_id"].tolist(), p["merchant_id"].tolist(), p["country"].tolist(),
                             [t.to_pydatetime() for t in p["timestamp"]])
    serving = model_inputs(raw, online)

    for name in NUMERIC_FEATURES:
        np.testing.assert_allclose(serving[name], training[name], rtol=1e-7, atol=1e-9, equal_nan=True,
                                   err_msg=f"seed {SEED}: {name}")
    for name in CATEGORICAL_FEATURES:
        assert list(serving[name]) == list(training[name]), f"seed {SEED}: {name}"
    # the probes really exercise the windows: history in every long window, fraud reports that only the label
    # events make, and lifetime counts that the snapshot alone would have got wrong (a top country it never shows)
    assert (training["cust_txn_count_7d"] > 0).all(), f"seed {SEED}"
    rows_only = history_frame(frame, LABEL_DELAY_DAYS).loc[probes]
    assert (expected_history["merchant_fraud_reports_30d"] > rows_only["merchant_fraud_reports_30d"]).any(), SEED
    snapshot_only = history_frame(frame, LABEL_DELAY_DAYS).loc[probes]
    assert (snapshot_only["cust_total_count"] < expected_history["cust_total_count"]).all(), f"seed {SEED}"
    assert (training["country_is_home"] == 0).any(), f"seed {SEED}"
