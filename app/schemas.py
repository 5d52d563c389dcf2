"""Data contracts at riskray's boundaries.

``Transaction`` is the Kafka message on the ``transactions`` topic (JSON, key = customer_id). It is defined
here once; its wire form (``message_fields``, ``kafka_values``), the Spark schema (``streaming.spark_schema``), the
stream's canonical-form check and the store's names for its fields (``STORE_COLUMN_OF``) are derived from it,
never written a second time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_serializer,
    field_validator,
)


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


class Transaction(BaseModel):
    """One card transaction as it travels through Kafka; the message key is its customer_id (``kafka_key``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: UUID
    customer_id: PositiveId
    merchant_id: PositiveId
    amount: Annotated[float, Strict(), Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
    timestamp: Annotated[AwareDatetime, Field(description="Event time, ISO 8601 with an offset; stored as UTC")]
    card_last_4: Annotated[str, Field(pattern=r"^[0-9]{4}$")]
    is_fraud: Literal[0, 1] = Field(description="The label; never a serving input")
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code")]
    device_type: DeviceType

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("timestamp")
    def _iso_utc(self, value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    def kafka_key(self) -> bytes:
        return str(self.customer_id).encode()

    def kafka_value(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_kafka_value(cls, raw: bytes | str) -> Transaction:
        """Parse one message; raises MessageError naming every field at fault."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            raise MessageError(describe_errors(error)) from None


# --- the wire form and the store's names of the message, derived from the model ----------------------------
def json_fields(model: type[BaseModel]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """A model's fields in its order (the order of its JSON), each with its JSON schema, references resolved."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def resolved(prop: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in prop:
            return defs[prop["$ref"].rsplit("/", 1)[-1]]
        if "allOf" in prop and len(prop["allOf"]) == 1:
            return resolved(prop["allOf"][0])
        return prop

    return tuple((name, resolved(prop)) for name, prop in schema["properties"].items())


@cache
def message_fields() -> tuple[tuple[str, dict[str, Any]], ...]:
    """The Kafka message's fields in wire order, with their JSON schema: what the producers write
    (``kafka_values``), the Spark schema and the stream's canonical-form check read."""
    return json_fields(Transaction)


# JSON schema's numeric bounds: keyword -> the comparison a value must pass, as written and as an operator (one that
# works alike on numbers, numpy arrays and Spark columns)
NUMBER_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "exclusiveMinimum": (">", operator.gt), "minimum": (">=", operator.ge),
    "maximum": ("<=", operator.le), "exclusiveMaximum": ("<", operator.lt),
}

_UTC_TEXT = "%Y-%m-%dT%H:%M:%S.%fZ"  # RFC 3339 in UTC to the microsecond: what the model reads back exactly


def kafka_values(columns: Mapping[str, Any]) -> list[bytes]:
    """Kafka values of many transactions given as columns (a DataFrame: event times tz-aware pandas datetimes), each
    the JSON ``Transaction.kafka_value`` writes: the model's fields in its order, each as its JSON type. The stream
    vouches for messages in this form without a trip to Python (streaming.validation.canonical_message)."""
    import numpy as np
    import orjson

    lists = []
    for name, prop in message_fields():
        values = columns[name]
        if prop.get("format") == "date-time":
            lists.append(values.dt.tz_convert(UTC).dt.strftime(_UTC_TEXT).tolist())
        elif prop.get("type") == "integer":
            lists.append(np.asarray(values, dtype=np.int64).tolist())
        elif prop.get("type") == "number":
            lists.append(np.asarray(values, dtype=np.float64).tolist())
        else:  # text as it is: orjson refuses what is not JSON text (a UUID or an enum it writes as text)
            lists.append(np.asarray(values, dtype=object).tolist())
    names = [name for name, _ in message_fields()]
    return [orjson.dumps(dict(zip(names, row, strict=False))) for row in zip(*lists, strict=True)]


# The store's ``transactions`` table keeps each message field under the field's name, but for these.
STORE_COLUMN_OF: dict[str, str] = {"timestamp": "event_time"}
MESSAGE_STORE_COLUMNS: tuple[str, ...] = tuple(STORE_COLUMN_OF.get(name, name) for name in Transaction.model_fields)


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


def _date_time_text(value: object) -> object:
    # Strict() would do in JSON but rejects the strings in Python mode (FastAPI validates parsed JSON in Python mode)
    if isinstance(value, int | float):
        raise ValueError("Input should be an RFC 3339 date-time string, not a number")
    return value


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
