"""Training data: transactions from the feature store or from a Parquet/CSV file, checked
before any Ray work starts, then turned into point-in-time model inputs with the features of ``app``.

Whatever the source, the result is a *snapshot*: the raw Kafka-message columns of every transaction the run
needs (the labelled period plus the history its features look back on), each row's label as known at the run's
cut-off (``LABEL``: ``app.labels``, NaN where none was reported by then) and, from the store, each row's customer
country counts from before the snapshot (``app.point_in_time.COUNTS_BEFORE_SNAPSHOT``: lifetime windows reach
further back than any snapshot). Features are code, not data, so the snapshot alone reproduces a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from app.config import Settings
from app.errors import UserError
from app.features import history_span
from app.labels import FRAUD_REPORT_COLUMNS, known_in_frame, known_label_sql, matured, maturity_days
from app.model_inputs import FEATURES, model_inputs, raw_columns
from app.point_in_time import history_frame, with_counts_before
from app.schemas import NUMBER_BOUNDS, STORE_COLUMN_OF, Transaction, message_fields

if TYPE_CHECKING:
    import psycopg2.extensions

SNAPSHOT_COLUMNS = list(Transaction.model_fields)
LABEL = "label_at_cutoff"  # the snapshot's column of each row's label as known at the cut-off (NaN: none yet)


class TrainingDataError(UserError, ValueError):
    """The data cannot train or score a model; the message names what is wrong, in one line."""


def history_days(settings: Settings) -> int:
    """How far before a labelled transaction its features look back (the declared windows' reach)."""
    return history_span()


def with_row_labels(frame: pd.DataFrame, settings: Settings, labels_at: datetime | None) -> pd.DataFrame:
    """A file's transactions with each row's own label as known at ``labels_at`` (the run's cut-off: a label
    inside a row counts as reported the label delay after its transaction); None: every row's label (a simulated
    world read once all its labels are in)."""
    if labels_at is None:
        labels_at = frame["timestamp"].max().to_pydatetime() + timedelta(days=settings.label_delay_days + 1)
    return frame.assign(**{LABEL: known_in_frame(frame, None, labels_at, settings.label_delay_days)})


def read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise TrainingDataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype={"card_last_4": str})
    else:
        raise TrainingDataError(f"{path}: expected a .parquet or .csv file of transactions")
    return check_transactions(frame, str(path))


def _shown(value: object) -> str:
    """A cell as a user would write it: 2, 'abc' (not np.int64(2))."""
    return repr(value.item() if hasattr(value, "item") else value)


def _number_rule(prop: dict, values: pd.Series) -> tuple[str, np.ndarray]:
    """What the message model requires of a numeric field, in words, and which values keep it."""
    if "enum" in prop:
        return " or ".join(map(str, prop["enum"])), values.isin(prop["enum"]).to_numpy()
    kept = np.ones(len(values), dtype=bool)
    words = []
    for keyword, (comparison, holds) in NUMBER_BOUNDS.items():
        if keyword in prop:
            kept &= holds(values.to_numpy(), prop[keyword])
            words.append(f"{comparison} {prop[keyword]}")
    return " and ".join(words), kept


def check_transactions(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The Kafka-message columns with proper dtypes, or TrainingDataError naming the first problem found. Numbers
    keep the message model's rules (its JSON schema: bounds, allowed values), as the stream applies them."""
    required = [name for name, prop in message_fields() if not prop.get("optional")]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(SNAPSHOT_COLUMNS)}")
    frame = frame.reindex(columns=[*SNAPSHOT_COLUMNS, *([LABEL] if LABEL in frame.columns else [])]).copy()
    if frame.empty:
        raise TrainingDataError(f"{source}: no transactions")

    def first_bad(name: str, bad: np.ndarray, must: str) -> TrainingDataError:
        row = int(np.flatnonzero(bad)[0])
        shown = _shown(frame[name].iloc[row])
        return TrainingDataError(f"{source}: column '{name}' must be {must}; row {row} has {shown}")

    numbers = [(name, prop) for name, prop in message_fields() if prop.get("type") in ("integer", "number")]
    for name, prop in numbers:
        integer = prop["type"] == "integer"
        values = pd.to_numeric(frame[name], errors="coerce")
        absent = values.isna() & frame[name].isna() if prop.get("optional") else pd.Series(False, index=frame.index)
        bad = (values.isna() | ~np.isfinite(values)) & ~absent
        if integer:
            bad |= (values != np.round(values)) & ~absent
        if bad.any():
            raise first_bad(name, bad.to_numpy(), "an integer" if integer else "a number")
        # an optional field left empty stays NaN (a transaction without its label), so it stays float
        frame[name] = values.astype(np.int64 if integer and not absent.any() else np.float64)
    for name, prop in numbers:
        must, kept = _number_rule(prop, frame[name])
        kept = kept | frame[name].isna().to_numpy()  # left out, which an optional field may be (checked above)
        if not kept.all():
            raise first_bad(name, ~kept, must)
    for name, prop in message_fields():
        if prop.get("format") == "date-time":
            stamps = pd.to_datetime(frame[name], utc=True, format="ISO8601", errors="coerce")
            if stamps.isna().any():
                row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
                raise TrainingDataError(
                    f"{source}: column '{name}' must be ISO 8601 times; row {row} has {frame[name].iloc[row]!r}")
            frame[name] = stamps.astype("datetime64[us, UTC]")
        elif prop.get("type") == "string":
            if frame[name].isna().any():
                row = int(np.flatnonzero(frame[name].isna().to_numpy())[0])
                raise TrainingDataError(f"{source}: column '{name}' is empty in row {row}")
            frame[name] = frame[name].astype(str)
    return frame.reset_index(drop=True)


def require_both_classes(labels: pd.Series, source: str) -> None:
    positives = int(labels.sum())
    if positives == 0:
        raise TrainingDataError(f"{source}: no positive labels (is_fraud = 1) in the training period: nothing to learn")
    if positives == len(labels):
        raise TrainingDataError(f"{source}: every transaction in the training period is labelled fraud")


TRAINING_FEATURE_COLUMNS = ("transaction_id", "customer_id", "merchant_id", "event_time", "is_fraud", "feature_set",
                            "features")


# the message fields from their store columns (psycopg2 reads a uuid as text and a smallint as an int, as the message
# types them)
_SNAPSHOT_SELECT = ", ".join(f"t.{STORE_COLUMN_OF.get(name, name)} AS {name}" for name in SNAPSHOT_COLUMNS)
# with each row's label as known at the cut-off (the history before the period needs none)
_SNAPSHOT = (f"SELECT {_SNAPSHOT_SELECT}, CASE WHEN t.event_time >= %(since)s THEN k.is_fraud END AS {LABEL} "
             f"FROM transactions t LEFT JOIN LATERAL ({known_label_sql()}) k ON true "
             "WHERE NOT t.is_late AND t.event_time >= %(first)s AND t.event_time < %(until)s")


def load_from_store(settings: Settings, since: datetime, until: datetime, labels_at: datetime) -> pd.DataFrame:
    """Transactions in [since - history, until) from PostgreSQL, with the labels of those in [since, until) as
    known at ``labels_at`` and their customers' country counts from before them (``country_counts_before``).

    One query in this process: Ray Data's ``read_sql`` cannot shard a PostgreSQL query and ran it as a single task
    anyway, after starting its executor and a worker (~9 s for 48k rows against ~1 s here)."""
    from app import db

    first = since - timedelta(days=history_days(settings))
    # Late rows never reached the stream's tiles, so they stay out of the history as they stay out of serving.
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(_SNAPSHOT, {"since": since, "first": first, "until": until, "labels_at": labels_at,
                                "delay": settings.label_delay_days})
        frame = pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])
        if frame.empty:
            raise TrainingDataError(
                f"feature store: no transactions between {first:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M}")
        frame = check_transactions(frame, "feature store")  # before the counts: a bad row stops the run first
        frame[LABEL] = frame[LABEL].astype(np.float64)  # NaN where none was known (the driver reads NULL as None)
        before = country_counts_before(cur, first, frame["customer_id"].unique().tolist())
    return with_counts_before(frame, before)


def load_fraud_reports(settings: Settings, since: datetime, until: datetime) -> pd.DataFrame:
    """The merchants' fraud reports (app.labels.FRAUD_REPORT_COLUMNS) a snapshot of [since - history, until)
    counts: reported before ``until`` and late enough for a window of its earliest row, whatever their
    transaction's age (reports are counted by report time)."""
    from app import db

    first = since - timedelta(days=2 * history_days(settings))
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT merchant_id, reported_at FROM fraud_reports WHERE merchant_id IS NOT NULL "
                    "AND reported_at >= %s AND reported_at < %s", (first, until))
        return pd.DataFrame(cur.fetchall(), columns=list(FRAUD_REPORT_COLUMNS))


def country_counts_before(cur: psycopg2.extensions.cursor, first: datetime, customers: list[int]) -> pd.DataFrame:
    """Per customer and country, the transactions earlier than ``first`` (customer_id, country,
    transaction_count): the all-time counts serving reads (``customer_countries``) less those from ``first`` on,
    in one statement, so both are read as of one moment. Lifetime windows then count in training as in serving,
    however far back a customer's history goes."""
    cur.execute(
        "WITH recent AS (SELECT customer_id, country, count(*) AS n FROM transactions WHERE NOT is_late "
        "AND event_time >= %(first)s AND customer_id = ANY(%(customers)s::bigint[]) GROUP BY 1, 2) "
        "SELECT cc.customer_id, cc.country::text, cc.transaction_count - coalesce(recent.n, 0) "
        "FROM customer_countries cc LEFT JOIN recent USING (customer_id, country) "
        "WHERE cc.customer_id = ANY(%(customers)s::bigint[]) AND cc.transaction_count > coalesce(recent.n, 0)",
        {"first": first, "customers": "{" + ",".join(map(str, customers)) + "}"})
    return pd.DataFrame(cur.fetchall(), columns=["customer_id", "country", "transaction_count"])


@dataclass
class Examples:
    """Labelled rows of the training period: ids, time, label and the model-input columns."""

    frame: pd.DataFrame  # transaction_id, customer_id, merchant_id, card_last_4, timestamp, is_fraud + FEATURES
    history_start: datetime | None = None  # the first transaction of the history the inputs were rebuilt from

    def inputs(self, rows: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        part = self.frame.iloc[rows]
        return {name: part[name].to_numpy() for name in FEATURES}

    @property
    def labels(self) -> np.ndarray:
        return self.frame["is_fraud"].to_numpy(dtype=np.int64)


def in_period(timestamps: pd.Series, since: datetime | None, until: datetime | None) -> np.ndarray:
    """Mask of the rows in [since, until); an open end when None."""
    keep = np.ones(len(timestamps), dtype=bool)
    if since is not None:
        keep &= (timestamps >= pd.Timestamp(since)).to_numpy()
    if until is not None:
        keep &= (timestamps < pd.Timestamp(until)).to_numpy()
    return keep


def build_examples(snapshot: pd.DataFrame, settings: Settings, since: datetime | None,
                   until: datetime | None, fraud_reports: pd.DataFrame | None = None) -> Examples:
    """Point-in-time model inputs for the transactions in [since, until), labelled as known at the cut-off (legitimate
    where nothing was reported by then: ``app.labels.matured``); all of ``snapshot`` is history."""
    history = history_frame(snapshot, settings.label_delay_days, fraud_reports)
    keep = in_period(snapshot["timestamp"], since, until)
    if not keep.any():
        raise TrainingDataError("no labelled transactions in the training period")
    part, part_history = snapshot[keep], history[keep]
    inputs = model_inputs(raw_columns(part), {name: part_history[name].to_numpy() for name in part_history.columns})
    frame = pd.DataFrame({
        "transaction_id": part["transaction_id"].to_numpy(),
        "customer_id": part["customer_id"].to_numpy(),
        "merchant_id": part["merchant_id"].to_numpy(),
        "card_last_4": part["card_last_4"].to_numpy(),
        "timestamp": part["timestamp"].to_numpy(dtype="datetime64[us]"),
        "is_fraud": matured(part[LABEL].to_numpy(dtype=np.float64)),  # the training label
        **inputs,
    })
    return Examples(frame.sort_values("timestamp", kind="stable").reset_index(drop=True),
                    history_start=pd.Timestamp(snapshot["timestamp"].min()).tz_convert(UTC).to_pydatetime())


def default_period(settings: Settings, until: datetime | None) -> tuple[datetime, datetime]:
    """``train_days`` ending at ``until``; by default, ending the label maturity ago, so its labels are read now."""
    end = until or datetime.now(UTC) - timedelta(days=maturity_days(settings))
    return end - timedelta(days=settings.train_days), end


def store_training_features(settings: Settings, examples: Examples) -> int:
    """Upsert the examples' point-in-time inputs into ``training_features`` (one JSON object per row)."""
    import io

    import orjson

    from app import db
    from app.model_inputs import FEATURE_SET

    frame = examples.frame
    rows = pd.DataFrame({  # the columns of TRAINING_FEATURE_COLUMNS
        "transaction_id": frame["transaction_id"], "customer_id": frame["customer_id"],
        "merchant_id": frame["merchant_id"],
        "event_time": pd.to_datetime(frame["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "is_fraud": frame["is_fraud"], "feature_set": FEATURE_SET,
        # orjson writes NaN (no history) as JSON null
        "features": [orjson.dumps(r).decode() for r in frame[list(FEATURES)].to_dict("records")],
    })
    buffer = io.StringIO()
    rows.to_csv(buffer, header=False, index=False)
    buffer.seek(0)
    listed = ", ".join(TRAINING_FEATURE_COLUMNS)
    rows = rows[list(TRAINING_FEATURE_COLUMNS)]
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE incoming_training_features (LIKE training_features INCLUDING DEFAULTS) "
                    "ON COMMIT DROP")
        cur.copy_expert(f"COPY incoming_training_features ({listed}) FROM STDIN WITH (FORMAT csv)", buffer)
        cur.execute(
            f"INSERT INTO training_features ({listed}) SELECT {listed} FROM incoming_training_features "
            "ON CONFLICT (transaction_id) DO UPDATE SET features = EXCLUDED.features, is_fraud = EXCLUDED.is_fraud, "
            "feature_set = EXCLUDED.feature_set, created_at = now()")
        return cur.rowcount
