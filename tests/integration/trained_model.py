"""One model trained for real from the store, as a user runs `riskray train`, shared by the session (a fixture in
conftest.py): the training tests check the run and its artifacts, the serving tests serve it. Training is the
slow part (a Tune search, a Ray Train worker group), so the suite pays for it once."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from app import db
from app.config import Settings
from app.labels import labels_cutoff
from app.schemas import STORE_COLUMN_OF
from streaming.simulator import Simulator, SimulatorConfig
from streaming.store_writer import insert_labels, insert_transactions
from tests.helpers import riskray
from tests.model import behaviour

DAYS, START = behaviour.TRAINING_WORLD_DAYS, behaviour.TRAINING_WORLD_START
SEED = 20261202  # the world; benchmarks/floors.py measures its test AUC and 20 other seeds' against the 0.8 floor
# time-forward folds on 3 days: a few hours between training and validation rows (the default, the 7-day label
# delay, needs a longer period)
TRAIN = ("--trials", "2", "--folds", "5", "--cv", "time", "--cv-gap-days", "0.1", "--workers", "2")


@dataclass(frozen=True)
class Trained:
    since: datetime
    until: datetime
    stdout: str
    version: str
    snapshot_md5: str  # of the snapshot file this run trained on (a later run rewrites the file)
    # label events stored before the run, each reported just before or just after its cut-off: transaction id ->
    # (its label inside its row, the label the run must have trained on)
    late_labels: dict[str, tuple[int, int]]


def cli_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")  # UTC, as the CLI reads it


def train(stack: Settings) -> Trained:
    """~50k simulated transactions of a pinned world in a period of the past, written to the scratch store, then
    `riskray train` on the period; the version it registered."""
    frames = list(Simulator(SimulatorConfig(seed=SEED)).backfill(START, DAYS))
    frame = pd.concat(frames, ignore_index=True).drop(columns="scenario")
    rows = frame.rename(columns=STORE_COLUMN_OF).assign(kafka_partition=None, kafka_offset=None, is_late=False)
    since, until = START, START + timedelta(days=DAYS)
    late_labels, events = _labels_around_the_cutoff(stack, frame, until)
    with db.connection(stack) as conn, conn.cursor() as cur:
        assert insert_transactions(cur, rows).inserted == len(frame)
        assert insert_labels(cur, events) == (len(events), 0)
    result = riskray("train", "--since", cli_time(since), "--until", cli_time(until), *TRAIN, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = re.search(r"version (\d+) -> alias 'challenger'", result.stdout)
    assert version, result.stdout[-2000:]
    snapshot = hashlib.md5((stack.training_dir / "snapshot.parquet").read_bytes()).hexdigest()
    return Trained(since, until, result.stdout, version.group(1), snapshot, late_labels)


def _labels_around_the_cutoff(stack: Settings, frame: pd.DataFrame, until: datetime
                              ) -> tuple[dict[str, tuple[int, int]], pd.DataFrame]:
    """Label events that contradict three rows' own labels: one reported an hour before the run's cut-off (the run
    sees it), two an hour after (it must not)."""
    cutoff = labels_cutoff(stack, until)
    legit = frame.loc[frame["is_fraud"] == 0, "transaction_id"].astype(str).tolist()
    fraud = frame.loc[frame["is_fraud"] == 1, "transaction_id"].astype(str).tolist()
    plan = [(legit[0], 1, "chargeback", cutoff - timedelta(hours=1), 1),  # seen: a fraud after all
            (legit[1], 1, "chargeback", cutoff + timedelta(hours=1), 0),  # after the cut-off: still legitimate
            (fraud[0], 0, "confirmed_legitimate", cutoff + timedelta(hours=1), 1)]  # after: still fraud
    events = pd.DataFrame([{"label_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"trained-model:{SEED}:{i}")),
                            "transaction_id": t,
                            "is_fraud": label, "source": source, "reported_at": pd.Timestamp(at),
                            "reason_code": None, "case_id": None, "kafka_partition": None, "kafka_offset": None}
                           for i, (t, label, source, at, _) in enumerate(plan)])
    own = dict(zip(frame["transaction_id"].astype(str), frame["is_fraud"], strict=True))
    return {t: (int(own[t]), trained_on) for t, _, _, _, trained_on in plan}, events
