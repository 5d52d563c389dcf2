"""The label maturity curve read from the real store's label events (monitoring.run.maturity_curve): first fraud
reports only, frauds as known at the report (a dispute found legitimate is not one), transactions at least the
horizon old, reports later than the horizon left out. A pinned set of events in a period of its own (2019)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app import db
from app.config import Settings
from app.schemas import STORE_COLUMN_OF
from monitoring import maturity
from monitoring.run import maturity_curve
from streaming.simulator import Simulator, SimulatorConfig
from streaming.store_writer import insert_labels, insert_transactions

pytestmark = pytest.mark.integration

SEED = 20261207
DAY = datetime(2019, 1, 10, tzinfo=UTC)  # no other test's world lives here
AS_OF = DAY + timedelta(days=95)  # the day is past the 90-day horizon and inside the 30 days before it
DELAYS = [0.1, 0.4, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 8.0, 10.0, 12.0, 14.0, 20.0, 25.0, 30.0, 40.0, 45.0, 50.0, 60.0,
          80.0]


def _event(transaction_id: str, n: int, is_fraud: int, source: str, reported_at: datetime) -> dict:
    return {"label_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"maturity-curve:{SEED}:{transaction_id}:{n}")),
            "transaction_id": transaction_id, "is_fraud": is_fraud, "source": source,
            "reported_at": pd.Timestamp(reported_at), "reason_code": None, "case_id": None, "kafka_partition": None,
            "kafka_offset": None}


def test_the_curve_is_measured_on_first_fraud_reports_of_old_enough_transactions(stack: Settings) -> None:
    frame = pd.concat(list(Simulator(SimulatorConfig(seed=SEED, customers=200, merchants=100)).backfill(DAY, 1)),
                      ignore_index=True).drop(columns="scenario")
    frame["customer_id"] += 3 * 10**12  # apart from every other test's entities
    frame["merchant_id"] += 3 * 10**12
    frame["is_fraud"] = None  # labels come as events only, as in production
    ids = frame["transaction_id"].astype(str).tolist()
    times = pd.to_datetime(frame["timestamp"], utc=True)
    events = []
    for i, delay in enumerate(DELAYS):  # a dispute, then its chargeback: the dispute is the first report
        at = times.iloc[i].to_pydatetime() + timedelta(days=delay)
        events += [_event(ids[i], 0, 1, "dispute", at), _event(ids[i], 1, 1, "chargeback", at + timedelta(days=3))]
    k = len(DELAYS)
    first = times.iloc[k].to_pydatetime()
    events += [_event(ids[k], 0, 1, "dispute", first + timedelta(days=2)),  # the cardholder's own purchase
               _event(ids[k], 1, 0, "confirmed_legitimate", first + timedelta(days=20)),
               _event(ids[k + 1], 0, 1, "chargeback", times.iloc[k + 1].to_pydatetime() + timedelta(days=92)),
               _event(ids[k + 2], 0, 1, "chargeback", AS_OF + timedelta(days=1))]  # not known at the report
    rows = frame.rename(columns=STORE_COLUMN_OF).assign(kafka_partition=None, kafka_offset=None, is_late=False)
    with db.connection(stack) as conn, conn.cursor() as cur:
        insert_transactions(cur, rows)
        insert_labels(cur, pd.DataFrame(events))
    curve = maturity_curve(stack, AS_OF)
    expected = maturity.from_delays(np.array(DELAYS), stack.label_horizon_days, stack.accuracy_min_positives, 7)
    assert curve.source == "label events" and curve.frauds == len(DELAYS), curve
    assert curve.days == expected.days and np.allclose(curve.share, expected.share)
    assert curve.at(2.25) == pytest.approx(5 / 20) and curve.days_to(0.5) == pytest.approx(11.25)
