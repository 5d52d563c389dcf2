"""One model trained for real from the store, as a user runs `riskray train`, shared by the session (a fixture in
conftest.py): the training tests check the run and its artifacts, the serving tests serve it. Training is the
slow part (a Tune search, a Ray Train worker group), so the suite pays for it once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from app import db
from app.config import Settings
from app.schemas import STORE_COLUMN_OF
from streaming.simulator import Simulator, SimulatorConfig
from streaming.store_writer import insert_transactions
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


def cli_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")  # UTC, as the CLI reads it


def train(stack: Settings) -> Trained:
    """~50k simulated transactions of a pinned world in a period of the past, written to the scratch store, then
    `riskray train` on the period; the version it registered."""
    frames = list(Simulator(SimulatorConfig(seed=SEED)).backfill(START, DAYS))
    frame = pd.concat(frames, ignore_index=True).drop(columns="scenario")
    rows = frame.rename(columns=STORE_COLUMN_OF).assign(kafka_partition=None, kafka_offset=None, is_late=False)
    with db.connection(stack) as conn, conn.cursor() as cur:
        assert insert_transactions(cur, rows) == len(frame)
    since, until = START, START + timedelta(days=DAYS)
    result = riskray("train", "--since", cli_time(since), "--until", cli_time(until), *TRAIN, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = re.search(r"version (\d+) -> alias 'challenger'", result.stdout)
    assert version, result.stdout[-2000:]
    snapshot = hashlib.md5((stack.training_dir / "snapshot.parquet").read_bytes()).hexdigest()
    return Trained(since, until, result.stdout, version.group(1), snapshot)
