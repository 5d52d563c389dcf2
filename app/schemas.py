"""Data contracts at riskray's boundaries.

Two Kafka messages, each one pydantic model: ``Transaction`` on the ``transactions`` topic (JSON, key =
customer_id) and ``LabelEvent`` on the ``labels`` topic (JSON, key = transaction_id). Each is defined here once;
its wire form (``message_fields``, ``kafka_values``), the Spark schema (``streaming.spark_schema``), the stream's
canonical-form check and the store's names for its fields (``STORE_COLUMN_OF``) are derived from it, never written
a second time. The wire form omits an optional field that is absent (``kafka_value``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    ValidationError,
)

from app.decision import Outcome


class DeviceType(StrEnum):
    POS = "pos"
    WEB = "web"
    MOBILE = "mobile"
    ATM = "atm"


# Numbers are Strict: "17" is not 17. Spark's schema-driven parse of the same message makes that distinction
# too, and the stream must never call a message valid that Spark cannot read.
PositiveId = Annotated[int, Strict(), Field(gt=0, le=2**63 - 1)]


# A valid message is ~300 bytes; far above that is not a transaction, whatever it holds (and parsing it would cost
# the stream): such a message goes to the dead-letter topic unread.
MAX_MESSAGE_BYTES = 64 * 1024


_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _date_time_text(value: object) -> object:
    """A date-time is RFC 3339 text: pydantic also reads a number, or a numeric string ("+0.0", the fuzzer found),
    as Unix seconds. Strict() would do in JSON but rejects the strings in Python mode (FastAPI validates parsed JSON
    in Python mode)."""
    if isinstance(value, int | float) or (isinstance(value, str) and not _RFC3339_START.match(value)):
        raise ValueError("Input should be an RFC 3339 date-time string such as 2026-11-29T08:00:00Z")
    return value


# A message's time: RFC 3339 text with any offset in, UTC inside, written back with a "Z"
UtcTime = Annotated[AwareDatetime, BeforeValidator(_date_time_text),
                    AfterValidator(lambda value: value.astimezone(UTC)),
                    PlainSerializer(lambda value: value.isoformat().replace("+00:00", "Z"), return_type=str)]


class KafkaMessage(BaseModel):
    """A message riskray reads from Kafka: its key is the text of one of its fields (``KEY_FIELD``), its value the
    model's JSON without the optional fields that are absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KEY_FIELD: ClassVar[str]

    def kafka_key(self) -> bytes:
        return str(getattr(self, self.KEY_FIELD)).encode()

    def kafka_value(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_kafka_value(cls, raw: bytes | str) -> KafkaMessage:
        """Parse one message; raises MessageError naming every field at fault."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            raise MessageError(describe_errors(error)) from None


class Transaction(KafkaMessage):
    """One card transaction as it travels through Kafka; the message key is its customer_id (``kafka_key``).

    ``is_fraud`` is absent in what a live client sends: nobody knows the label at authorisation. Backfilled history
    and files in the original format may carry it; such a label counts as reported ``label_delay_days`` after the
    transaction (docs/labels.md)."""

    KEY_FIELD: ClassVar[str] = "customer_id"

    transaction_id: UUID
    customer_id: PositiveId
    merchant_id: PositiveId
    amount: Annotated[float, Strict(), Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
    timestamp: Annotated[UtcTime, Field(description="Event time, ISO 8601 with an offset; stored as UTC")]
    card_last_4: Annotated[str, Field(pattern=r"^[0-9]{4}$")]
    is_fraud: Literal[0, 1] | None = Field(
        default=None, description="The label when the sender knows it (history backfills); absent live. Never a "
                                  "serving input")
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code")]
    device_type: DeviceType


class LabelSource(StrEnum):
    """Where a label comes from (docs/labels.md has the delays the simulator gives each)."""

    ANALYST = "analyst"  # a fraud analyst's verdict on a reviewed transaction: fraud or legitimate, within hours
    DISPUTE = "dispute"  # the cardholder disputes the charge with the issuer: days to weeks
    CHARGEBACK = "chargeback"  # the card scheme's chargeback with a fraud reason code: weeks, up to ~120 days
    CONFIRMED_LEGITIMATE = "confirmed_legitimate"  # a dispute resolved as the cardholder's own purchase
    BACKFILL = "backfill"  # the label inside a transaction message (history, files): known label_delay_days later


class LabelEvent(KafkaMessage):
    """One label reported for one transaction, on the ``labels`` topic (key = transaction_id, so a transaction's
    events stay in order on one partition) or through ``POST /labels``. Stored once per ``label_id``; for a
    transaction, the event reported last by ``reported_at`` is its label from that time on, and the earlier ones
    stay as its history."""

    KEY_FIELD: ClassVar[str] = "transaction_id"

    label_id: UUID = Field(description="The event's own id: a replayed or duplicated event is stored once")
    transaction_id: UUID
    is_fraud: Literal[0, 1] = Field(description="1: fraud; 0: legitimate")
    source: LabelSource
    reported_at: Annotated[UtcTime, Field(description="When the label became known, RFC 3339 with an offset")]
    reason_code: Annotated[str, Field(pattern=r"^[0-9A-Za-z.]{1,12}$", description="The scheme's reason code of a "
                                      "dispute or chargeback (Visa 10.4, Mastercard 4837)")] | None = None
    case_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$",
                                  description="The case manager's reference")] | None = None


class LabelBatch(BaseModel):
    """POST /labels: label events from an analyst tool or a case manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[LabelEvent] = Field(min_length=1, max_length=1000)


class LabelsAccepted(BaseModel):
    """What POST /labels answers once the events are in Kafka, on their way to the store exactly once."""

    model_config = ConfigDict(extra="forbid")

    accepted: int = Field(ge=0, description="label events written to the labels topic")


# --- the wire form and the store's names of the message, derived from the model ----------------------------
def json_fields(model: type[BaseModel]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """A model's fields in its order (the order of its JSON), each with its JSON schema, references resolved; an
    optional field (``X | None = None``) has the schema of X with ``"optional": True``."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def resolved(prop: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in prop:
            return defs[prop["$ref"].rsplit("/", 1)[-1]]
        if "allOf" in prop and len(prop["allOf"]) == 1:
            return resolved(prop["allOf"][0])
        if "anyOf" in prop:
            present = [p for p in prop["anyOf"] if p.get("type") != "null"]
            if len(present) == 1 and len(prop["anyOf"]) == 2:
                return {**resolved(present[0]), "optional": True}
        return prop

    return tuple((name, resolved(prop)) for name, prop in schema["properties"].items())


@cache
def message_fields(model: type[KafkaMessage] = Transaction) -> tuple[tuple[str, dict[str, Any]], ...]:
    """A Kafka message's fields in wire order, with their JSON schema: what the producers write
    (``kafka_values``), the Spark schema and the stream's canonical-form check read."""
    fields = json_fields(model)
    if fields[0][1].get("optional"):
        raise TypeError(f"{model.__name__}: the first field of a message must be required (the canonical form)")
    return fields


# JSON schema's numeric bounds: keyword -> the comparison a value must pass, as written and as an operator (one that
# works alike on numbers, numpy arrays and Spark columns)
NUMBER_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "exclusiveMinimum": (">", operator.gt), "minimum": (">=", operator.ge),
    "maximum": ("<=", operator.le), "exclusiveMaximum": ("<", operator.lt),
}

_UTC_TEXT = "%Y-%m-%dT%H:%M:%S.%fZ"  # RFC 3339 in UTC to the microsecond: what the model reads back exactly


def kafka_values(columns: Mapping[str, Any], model: type[KafkaMessage] = Transaction) -> list[bytes]:
    """Kafka values of many messages given as columns (a DataFrame: times tz-aware pandas datetimes), each the JSON
    ``kafka_value`` writes: the model's fields in its order, each as its JSON type, an optional field left out
    where it is missing (a missing column, None or NaN). The stream vouches for messages in this form without a
    trip to Python (streaming.validation.canonical_message)."""
    import numpy as np
    import orjson
    import pandas as pd

    lists, names, missing = [], [], []
    for name, prop in message_fields(model):
        if prop.get("optional") and name not in columns:
            continue
        values = pd.Series(columns[name]).reset_index(drop=True)
        absent = values.isna().to_numpy() if prop.get("optional") else None
        if absent is not None and absent.any():
            values = values.where(~absent, other=values[~absent].iloc[0] if (~absent).any() else 0)
        if prop.get("format") == "date-time":
            listed = values.dt.tz_convert(UTC).dt.strftime(_UTC_TEXT).tolist()
        elif prop.get("type") == "integer":
            listed = np.asarray(values, dtype=np.int64).tolist()
        elif prop.get("type") == "number":
            listed = np.asarray(values, dtype=np.float64).tolist()
        else:  # text as it is: orjson refuses what is not JSON text (a UUID or an enum it writes as text)
            listed = np.asarray(values, dtype=object).tolist()
        lists.append(listed)
        names.append(name)
        missing.append(absent if absent is not None and absent.any() else None)
    if not any(m is not None for m in missing):
        return [orjson.dumps(dict(zip(names, row, strict=True))) for row in zip(*lists, strict=True)]
    values_out = []
    for i, row in enumerate(zip(*lists, strict=True)):
        values_out.append(orjson.dumps({name: value for name, value, m in zip(names, row, missing, strict=True)
                                        if m is None or not m[i]}))
    return values_out


# The store's ``transactions`` table keeps each message field under the field's name, but for these; ``labels``
# keeps a label event's fields under their own names.
STORE_COLUMN_OF: dict[str, str] = {"timestamp": "event_time"}
MESSAGE_STORE_COLUMNS: tuple[str, ...] = tuple(STORE_COLUMN_OF.get(name, name) for name in Transaction.model_fields)
LABEL_STORE_COLUMNS: tuple[str, ...] = tuple(LabelEvent.model_fields)


class MessageError(ValueError):
    """A message that does not satisfy its contract. ``str()`` names each field at fault."""


def describe_errors(error: ValidationError) -> str:
    """One line: ``field: reason; field: reason``, the form that goes to the DLQ and to users."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


# --- the prediction API ---------------------------------------------------------------------------------
# The HTTP API says what it accepts in its OpenAPI schema, and accepts exactly that (fuzzed both ways in
# tests/integration/test_serving.py): numbers are JSON numbers, never strings ("17" is not 17); an ``integer`` is
# any number with no fractional part, 1762.0 included, as JSON Schema defines it; a date-time is an RFC 3339 string
# with an offset, never a Unix timestamp.


def _integral_float_as_int(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _json_integer(low: int, high: int | None = None, exclusive_low: bool = False) -> object:
    bounds = Field(gt=low, le=high) if exclusive_low else Field(ge=low, le=high)
    return Annotated[Annotated[int, Strict(), bounds], BeforeValidator(_integral_float_as_int)]


# Ids up to 2**53 - 1, the largest integer every JSON client holds exactly (a float64 rounds 2**63 - 1 up to 2**63,
# which the fuzzer found: an id at the bound read as one above it)
JsonId = _json_integer(0, 2**53 - 1, exclusive_low=True)
JsonCount = _json_integer(0, 2**31 - 1)
# an average of amounts is bounded like an amount (the fuzzer sent 1.3e102, which overflows the model's float32)
MeanAmount = Annotated[float, Strict(), Field(ge=0, le=1_000_000, allow_inf_nan=False)]


DateTimeText = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


class PredictionRequest(BaseModel):
    """POST /predict: the original request (amount, merchant_id, customer_id, optional 1-minute window
    features) plus optional raw transaction fields. Missing window features come from the feature store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Annotated[float, Strict(), Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    merchant_id: JsonId  # type: ignore[valid-type]
    customer_id: JsonId  # type: ignore[valid-type]
    transaction_count: JsonCount | None = Field(  # type: ignore[valid-type]
        default=None, description="Customer's transactions earlier in this minute; from the store when omitted")
    avg_amount: MeanAmount | None = Field(
        default=None, description="Their mean amount; from the store when omitted")
    transaction_id: UUID | None = None
    timestamp: DateTimeText | None = Field(
        default=None, description="Event time, RFC 3339 with an offset; now when omitted")
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    device_type: DeviceType | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None


class Contribution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str
    contribution: float


class Reason(BaseModel):
    """Why an answer is a review or a decline, in words: a group of related model inputs (``app.reasons``) and its
    value against the card's usual one."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="the group of model inputs, e.g. 'amount', 'country'")
    text: str = Field(description="e.g. \"amount 1,240.00, 12.0x the card's 30-day mean\"")


class PredictionResponse(BaseModel):
    """What /predict answers, and each item of /predict/batch. The fast path builds the same body as a dict (no
    model per request); tests/unit/test_response_schemas.py checks every variant against this model."""

    model_config = ConfigDict(extra="forbid")

    is_fraud: Literal[0, 1]
    fraud_probability: float = Field(ge=0, le=1)
    latency_ms: float
    model_version: str
    features_degraded: bool = Field(
        default=False, description="The feature store did not answer in time: stored features were defaulted")
    outcome: Outcome = Field(description="what to do: by the model version's review and decline thresholds")
    reasons: list[Reason] = Field(
        default_factory=list, description="why a review or a decline, the strongest first (at most 3); "
                                          "empty on approve")
    explanation: list[Contribution] | None = Field(
        default=None, description="explain=true: the 3 largest feature contributions (log-odds)")


class BatchPredictionResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictions: list[PredictionResponse]


class HealthResponse(BaseModel):
    """GET /health: 200 with status 'ok' when a model is loaded and the feature store answers, else 503 with
    status 'unavailable' and the reasons."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "unavailable"]
    reasons: list[str] = Field(default_factory=list, description="why it cannot answer well; empty when ok")
    model_version: str | None = None
    challenger: str | None = None
    ab_mode: str | None = None
    decisions: str | None = Field(default=None, description="the served versions' review/decline thresholds")
    last_reload_error: str | None = Field(default=None, description="the last failed reload; the old model serves")


class AbMode(StrEnum):
    """How a challenger is served beside the champion."""

    off = "off"
    canary = "canary"  # a share of requests answered by the challenger
    shadow = "shadow"  # the challenger scores every request, logged but never returned


class ServeModelConfig(BaseModel):
    """The Serve deployment's ``user_config``: which models answer. Changing it reconfigures replicas in place
    (no restart); ``riskray serve deploy|reload`` writes it with the champion alias resolved to a version."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)  # plain strings in user_config

    champion: str = Field(default="champion", description="version number, or an alias resolved at load")
    challenger: str | None = Field(default=None, description="version or alias served beside the champion")
    ab_mode: AbMode = Field(
        default=AbMode.off.value, description="canary: canary_share of requests answered by the challenger; "
                                              "shadow: the challenger scores every request, logged, never returned")
    canary_share: float = Field(default=0.1, ge=0, le=1)
    decisions: str | None = Field(
        default=None, description="the served versions' review/decline thresholds when resolved: a pair re-chosen "
                                  "for the same version (`riskray thresholds --set`) changes it, so replicas reload")
