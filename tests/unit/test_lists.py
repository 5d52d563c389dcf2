"""The allow and deny lists' contract (app/lists.py) and how a replica keeps them (serve_deployments/live_lists.py):
an entry is validated before it is stored, a card's deny outweighs an allow, and a failed read keeps the last
lists applying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.lists import ListEntry, ListView, NewEntry, RemovedEntry
from serve_deployments.live_lists import LiveLists

GOOD = {"list": "deny", "entity": "customer", "entity_id": 42, "reason": "case 88: chargeback", "added_by": "ana"}


def _entry(entry_id: int, kind: str = "deny", entity: str = "customer", entity_id: int = 42) -> ListEntry:
    return ListEntry(entry_id=entry_id, list=kind, entity=entity, entity_id=entity_id, reason="case 1",
                     added_by="ana", added_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("change", "field"), [
    ({"list": "block"}, "list"), ({"entity": "card"}, "entity"), ({"entity_id": 0}, "entity_id"),
    ({"entity_id": "42"}, "entity_id"), ({"reason": "  "}, "reason"), ({"reason": "case\x00 1"}, "reason"),
    ({"added_by": ""}, "added_by"), ({"added_by": "ana\nbob"}, "added_by"),
    ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"), ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ({"note": "x"}, "note")])
def test_a_bad_entry_is_refused_naming_its_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        NewEntry.model_validate({**GOOD, **change})
    assert error.value.errors()[0]["loc"][0] == field


def test_a_good_entry_keeps_its_words_and_an_id_may_be_a_whole_json_number() -> None:
    entry = NewEntry.model_validate_json('{"list": "allow", "entity": "merchant", "entity_id": 17.0, '
                                         '"reason": " vip merchant ", "added_by": "ana", '
                                         '"expires_at": "2099-01-01T00:00:00+01:00"}')
    assert entry.entity_id == 17 and entry.reason == "vip merchant"
    assert entry.expires_at == datetime(2098, 12, 31, 23, tzinfo=UTC)
    assert RemovedEntry(entity="customer", entity_id=1, removed_by="ana").removed_by == "ana"


def test_a_deny_on_either_entity_beats_an_allow_and_unlisted_pairs_go_to_the_model() -> None:
    view = ListView([_entry(1, "allow", "customer", 1), _entry(2, "deny", "merchant", 7),
                     _entry(3, "allow", "merchant", 8)])
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert view.decide(1, 7, at).entry_id == 2
    assert view.decide(1, 9, at).entry_id == 1 and view.decide(5, 8, at).entry_id == 3
    assert view.decide(5, 9, at) is None
    assert view.decide(1, 7, datetime(2025, 1, 1, tzinfo=UTC)) is None  # before any was added


def test_the_reason_of_a_listed_answer_names_the_list_who_and_until_when() -> None:
    entry = _entry(1).model_copy(update={"expires_at": datetime(2026, 2, 1, 12, tzinfo=UTC)})
    assert entry.reason_text() == {"input": "list", "text": (
        "customer 42 is on the deny list: case 1 (added by ana on 2026-01-01, until 2026-02-01 12:00 UTC)")}


def test_a_replica_keeps_applying_its_last_lists_when_a_read_fails() -> None:
    reads: list[object] = [[_entry(1)], ConnectionError("connection refused"), []]

    def read(settings: Settings) -> list[ListEntry]:
        result = reads.pop(0)
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[return-value]

    live = LiveLists(Settings(serve_lists_refresh_s=3600), read=read)  # the thread reads once, then sleeps
    try:
        at = datetime(2026, 6, 1, tzinfo=UTC)
        assert live.decide(42, 7, at) is not None
        live.refresh()  # the database is away: the last lists stay
        assert live.decide(42, 7, at) is not None and live.error == "connection refused"
        live.refresh()  # back, and the entry is gone
        assert live.decide(42, 7, at + timedelta(seconds=1)) is None and live.error is None
    finally:
        live.close()
