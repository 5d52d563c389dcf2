"""Allow and deny lists: cards (customers) and merchants whose outcome the fraud team decides, before the model.

An entry says who put the entity on which list, when, why, and until when (optional). Entries live in the feature
store (``list_entries``) and are never deleted: removing one stamps ``removed_at``/``removed_by``, so what applied
at any past time stays answerable (the backtest replays the lists as they were). At most one live entry per entity.

At a time t an entry applies when ``added_at <= t``, it was not removed by t, and it had not expired by t. A deny
on the card or the merchant declines; else an allow on the card or the merchant approves (``list_outcome``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app import db
from app.config import Settings
from app.errors import UserError
from app.schemas import DateTimeText, JsonId


class AlreadyListedError(UserError):
    """The entity has a live entry: remove it first (HTTP 409)."""


class NotListedError(UserError):
    """The entity is on no list (HTTP 404)."""


ListKind = Literal["allow", "deny"]
Entity = Literal["customer", "merchant"]
OUTCOME_OF: dict[str, str] = {"deny": "decline", "allow": "approve"}

COLUMNS = ("entry_id", "list", "entity", "entity_id", "reason", "added_by", "added_at", "expires_at", "removed_at",
           "removed_by")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM list_entries"
# live now: what serving applies (the partial unique index keeps one per entity)
LIVE_SQL = f"{_SELECT} WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > now()) ORDER BY entry_id"
# every entry that applied at some time in [since, until): what a replay of that period needs
DURING_SQL = (f"{_SELECT} WHERE added_at < %(until)s AND (removed_at IS NULL OR removed_at > %(since)s) "
              "AND (expires_at IS NULL OR expires_at > %(since)s) ORDER BY entry_id")
ADD_SQL = ("INSERT INTO list_entries (list, entity, entity_id, reason, added_by, expires_at) "
           f"VALUES (%(list)s, %(entity)s, %(entity_id)s, %(reason)s, %(added_by)s, %(expires_at)s) "
           f"RETURNING {', '.join(COLUMNS)}")
# an expired entry still unremoved would block the entity's next one: removing an entity's entry ends it too
REMOVE_SQL = (f"UPDATE list_entries SET removed_at = now(), removed_by = %(removed_by)s WHERE entity = %(entity)s "
              f"AND entity_id = %(entity_id)s AND removed_at IS NULL RETURNING {', '.join(COLUMNS)}")
_END_EXPIRED_SQL = ("UPDATE list_entries SET removed_at = expires_at, removed_by = 'expired' WHERE entity = "
                    "%(entity)s AND entity_id = %(entity_id)s AND removed_at IS NULL AND expires_at <= now()")


def _printable(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    if not value.isprintable():
        raise ValueError("has control characters (a newline, a NUL...)")
    return value.strip()


class NewEntry(BaseModel):
    """One entity put on a list (the CLI's arguments, the body of POST /lists)."""

    model_config = ConfigDict(extra="forbid")

    list: ListKind
    entity: Entity
    entity_id: JsonId  # type: ignore[valid-type]
    reason: str = Field(min_length=3, max_length=500, description="why: a case id, a chargeback, an analyst note")
    added_by: str = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$", description="who")
    expires_at: DateTimeText | None = Field(  # type: ignore[valid-type]
        default=None, description="RFC 3339 with an offset; never when omitted")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("expires_at is in the past: the entry would never apply")
        return value

    @field_validator("reason", "added_by")
    @classmethod
    def _said(cls, value: str) -> str:
        return _printable(value)


class RemovedEntry(BaseModel):
    """An entity taken off its list (POST /lists/remove)."""

    model_config = ConfigDict(extra="forbid")

    entity: Entity
    entity_id: JsonId  # type: ignore[valid-type]
    removed_by: str = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")

    @field_validator("removed_by")
    @classmethod
    def _said(cls, value: str) -> str:
        return _printable(value)


class ListEntry(BaseModel):
    """A stored entry."""

    model_config = ConfigDict(extra="forbid")

    entry_id: int
    list: ListKind
    entity: Entity
    entity_id: int
    reason: str
    added_by: str
    added_at: datetime
    expires_at: datetime | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None

    def applies_at(self, at: datetime) -> bool:
        return (self.added_at <= at and (self.removed_at is None or self.removed_at > at)
                and (self.expires_at is None or self.expires_at > at))

    def reason_text(self) -> dict[str, str]:
        """The answer's reason when this entry decided it."""
        until = f", until {self.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if self.expires_at else ""
        return {"input": "list", "text": f"{self.entity} {self.entity_id} is on the {self.list} list: {self.reason} "
                                         f"(added by {self.added_by} on {self.added_at.astimezone(UTC):%Y-%m-%d}"
                                         f"{until})"}


class ListView:
    """Entries by entity, for lookups by (customer, merchant) at a time: serving's live entries, or every entry of
    a replayed period."""

    def __init__(self, entries: Iterable[ListEntry]) -> None:
        self.entries: dict[tuple[str, int], list[ListEntry]] = {}
        for entry in entries:
            self.entries.setdefault((entry.entity, entry.entity_id), []).append(entry)

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def decide(self, customer_id: int, merchant_id: int, at: datetime) -> ListEntry | None:
        """The entry that decides a transaction at ``at``: a deny on either, else an allow on either, else None."""
        if not self.entries:
            return None
        found = [e for key in (("customer", customer_id), ("merchant", merchant_id))
                 for e in self.entries.get(key, ()) if e.applies_at(at)]
        for kind in ("deny", "allow"):
            for entry in found:
                if entry.list == kind:
                    return entry
        return None


def _rows(rows: Sequence[tuple]) -> list[ListEntry]:
    return [ListEntry.model_validate(dict(zip(COLUMNS, row, strict=True))) for row in rows]


def live(settings: Settings) -> list[ListEntry]:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(LIVE_SQL)
        return _rows(cur.fetchall())


def during(settings: Settings, since: datetime, until: datetime) -> list[ListEntry]:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(DURING_SQL, {"since": since, "until": until})
        return _rows(cur.fetchall())


def add(settings: Settings, entry: NewEntry) -> ListEntry:
    """Store ``entry``; an entity already on a list is a UserError naming its entry (remove it first)."""
    import psycopg2.errors

    params = entry.model_dump()
    try:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute(_END_EXPIRED_SQL, params)
            cur.execute(ADD_SQL, params)
            return _rows(cur.fetchall())[0]
    except psycopg2.errors.UniqueViolation:
        current = [e for e in live(settings) if (e.entity, e.entity_id) == (entry.entity, entry.entity_id)]
        said = f" (entry {current[0].entry_id}: {current[0].list}, {current[0].reason!r})" if current else ""
        raise AlreadyListedError(f"{entry.entity} {entry.entity_id} is already on a list{said}: remove it first"
                                 ) from None


def remove(settings: Settings, removed: RemovedEntry) -> ListEntry:
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(REMOVE_SQL, removed.model_dump())
        rows = _rows(cur.fetchall())
    if not rows:
        raise NotListedError(f"{removed.entity} {removed.entity_id} is on no list")
    return rows[0]


class ListEntries(BaseModel):
    """GET /lists: the live entries."""

    model_config = ConfigDict(extra="forbid")

    entries: list[ListEntry]
