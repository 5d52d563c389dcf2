"""One pinned simulated world, served for real, shared by the monitoring and retraining tests (a session fixture
in conftest.py: building it is the slowest setup of the suite).

The world (seed pinned, event times fixed by WORLD_END): 59 days, of which the last 21 are served: two weeks of the
same world, then a week after the simulator's drift switch (amounts x2 from DRIFT_AT). The champion trains on the
week before SERVE_START, so every 30-day window of its training rows is full (31 days of history before it) and two
weeks of daily checks follow it before the switch. A tenth of the served days is
sent to /predict/batch, two days at a time once the rest of those days is in the store (Kafka -> Spark ->
PostgreSQL), so a served transaction sees its history as serving does, minus the other served ones of its own two
days. Each chunk's served rows are streamed once they are answered (the watermark spans a chunk, so they are on
time for the tiles): later transactions count them, as they count every transaction in production. Streaming them
only at the end left every served transaction's 7-day counts a tenth short once two weeks were served
(`merchant_txn_count_7d` read PSI 0.17 with nothing changed). The champion is promoted and Serve answers with it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from app import db
from app.config import Settings
from app.operations import serving, supervisor
from app.registry import CHALLENGER, Registry
from app.schemas import ServeModelConfig
from streaming.replay import request_body
from streaming.simulator import DriftConfig
from tests import scratch
from tests.helpers import riskray

from .serve_app import deploy
from .stream_harness import WORLD_END, StreamHarness, recent_transactions

SEED = 20261204  # the world, the served sample; in every failure message
SERVE_START = WORLD_END - timedelta(days=21)
DRIFT_AT = WORLD_END - timedelta(days=7)
TRAIN_SINCE = SERVE_START - timedelta(days=7)
SERVED_SHARE = 0.10
CHUNK = "2D"  # history streamed, then its served sample scored, this much at a time (SERVE_START to WORLD_END)
WATERMARK_S = int(2.5 * 86_400)  # > a chunk: its served rows, streamed after its other rows, are not late

@dataclass(frozen=True)
class World:
    frame: pd.DataFrame
    served: pd.DataFrame
    answers: pd.DataFrame  # transaction_id -> fraud_probability, model_version as answered
    version: str
    api: httpx.Client


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """RISKRAY_* variables for what this process starts (a Serve deployment takes them into its runtime_env)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cli_time(when) -> str:  # type: ignore[no-untyped-def]
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def wait(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"seed {SEED}: {what}"
        time.sleep(1)
    return result


def _stored_rows(settings: Settings, customers: list[int]) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features WHERE customer_id = ANY(%s)",
                    (customers,))
        return int(cur.fetchone()[0])


def _transactions(settings: Settings, customers: list[int]) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM transactions WHERE customer_id = ANY(%s)", (customers,))
        return int(cur.fetchone()[0])


def _logged_with_inputs(settings: Settings, version: str) -> int:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM predictions WHERE numeric_inputs IS NOT NULL AND model_version = %s",
                    (version,))
        return int(cur.fetchone()[0])


def _send(harness: StreamHarness, rows: pd.DataFrame) -> None:
    from streaming.simulator import message_values

    harness.send(zip((str(c).encode() for c in rows["customer_id"]), message_values(rows), strict=True))


def deploy_champion(stack: Settings, version: str) -> None:
    """Serve answering with ``version``. A generous store budget: these tests are about drift, and a degraded answer
    (the store slower than 50 ms while Spark writes beside it on 2 cores) would log default inputs instead of the
    served history."""
    with environment(RISKRAY_SERVE_STORE_TIMEOUT_MS="5000"):
        deploy(stack, ServeModelConfig(champion=version))


@contextlib.contextmanager
def served(stack: Settings, tmp: Path) -> Iterator[World]:
    """The world streamed, trained on, served and labelled (see the module docstring); Serve and the streaming
    job stay up until the block ends."""
    frame = recent_transactions(SEED, 59, customers=600, merchants=600, block=11,
                                drift=DriftConfig(at=DRIFT_AT, amount_factor=2.0))
    rng = np.random.default_rng(SEED)
    is_served = ((frame["timestamp"] >= pd.Timestamp(SERVE_START)) & (rng.random(len(frame)) < SERVED_SHARE)).to_numpy()
    served, history = frame[is_served], frame[~is_served]
    customers = [int(c) for c in frame["customer_id"].unique()]
    # the stack's own (scratch) topic and query names: the exporter then reports this job's lag and freshness
    # a watermark a little longer than a chunk: each chunk's served rows, sent after its other rows, are on time
    scratch.empty_tables(stack, "predictions", "monitoring_reports")  # the drift job reads every row of a window
    harness = StreamHarness(stack, tmp, stack_names=True, RISKRAY_STREAM_WATERMARK_SECONDS=str(WATERMARK_S))
    api = httpx.Client(base_url=f"http://{stack.ray_host}:{stack.serve_port}", timeout=60)
    try:
        before = history[history["timestamp"] < pd.Timestamp(SERVE_START)]
        _send(harness, before)  # before the job starts: its first micro-batch reads all of it, none is late
        harness.start()
        harness.wait_until(lambda: _stored_rows(stack, customers) == len(before), 300,
                           f"{len(before)} history rows in the tiles",
                           progress=lambda: f"{_stored_rows(stack, customers)} stored")
        trained = riskray("train", "--since", cli_time(TRAIN_SINCE), "--until", cli_time(SERVE_START), "--trials", "0",
                          timeout=900)
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        with Registry(stack) as registry:
            version = registry.by_alias(CHALLENGER).version
        assert riskray("promote", version).returncode == 0
        deploy_champion(stack, version)
        answered = []
        sent = len(before)
        # Two days at a time: the rest of them goes into the store, then their served sample is scored. The store
        # then holds at most two days of the future: all-time inputs (a customer's country counts, ~150 rows of
        # history each) barely see it, windowed ones never (their tiles end at the transaction's minute).
        for start in pd.date_range(SERVE_START, WORLD_END, freq=CHUNK, inclusive="left"):
            end = start + pd.Timedelta(CHUNK)
            in_chunk = (history["timestamp"] >= start) & (history["timestamp"] < end)
            _send(harness, history[in_chunk])
            sent += int(in_chunk.sum())
            harness.wait_until(lambda sent=sent: _stored_rows(stack, customers) == sent, 180,
                               f"{sent} rows in the tiles by {end}",
                               progress=lambda: f"{_stored_rows(stack, customers)} stored")
            part = served[(served["timestamp"] >= start) & (served["timestamp"] < end)]
            response = api.post("/predict/batch", json=[request_body(row) for _, row in part.iterrows()])
            assert response.status_code == 200, response.text
            for row_id, answer in zip(part["transaction_id"], response.json()["predictions"], strict=True):
                assert not answer["features_degraded"], answer
                answered.append((row_id, answer["fraud_probability"], answer["model_version"]))
            _send(harness, part)  # answered: now into the store, for later transactions' windows and their labels
            sent += len(part)
        harness.wait_until(lambda: _transactions(stack, customers) == len(frame), 300, "served rows stored")
        wait(lambda: _logged_with_inputs(stack, version) == len(served), 60, "every prediction logged with its inputs")
        wait(harness.caught_up, 120, "the stream past every message")  # its progress log is final: stop it
        # Everything is stored: the job stops, so later tests can run the stack's own streaming job on these
        # topics (the exporter keeps reporting lag and freshness from the progress log).
        harness.stop()
        answers = pd.DataFrame(answered, columns=["transaction_id", "fraud_probability", "model_version"])
        yield World(frame, served, answers.set_index("transaction_id"), version, api)
    finally:
        harness.stop()
        api.close()
        if supervisor.is_running(stack):  # the stack-teardown test may have stopped the stack already
            with serving.ServeClient(stack) as client, contextlib.suppress(serving.ServeError):
                client.shutdown()


