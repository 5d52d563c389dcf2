"""`riskray lists`: the allow and deny lists of cards (customers) and merchants (``app.lists``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from app.config import get_settings

lists_cli = typer.Typer(help="Allow and deny lists: a listed card's or merchant's outcome comes from its list, "
                             "before the model; serving applies a change within seconds.", no_args_is_help=True)


def _validated(model: Any, values: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from app.errors import UserError

    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"{'.'.join(map(str, first['loc'])) or 'entry'}: {first['msg']}") from None


def _say(entry: Any) -> str:
    until = f" until {entry.expires_at:%Y-%m-%d %H:%M}" if entry.expires_at else ""
    return (f"{entry.entry_id:>5}  {entry.list:<5}  {entry.entity:<8} {entry.entity_id:<12} {entry.added_by} on "
            f"{entry.added_at:%Y-%m-%d %H:%M}{until}: {entry.reason}")


@lists_cli.command("show")
def show() -> None:
    """The entries that apply now."""
    from app import lists

    entries = lists.live(get_settings())
    if not entries:
        typer.echo("no list entries")
    for entry in entries:
        typer.echo(_say(entry))


@lists_cli.command("add")
def add(
    kind: Annotated[str, typer.Argument(metavar="allow|deny")],
    entity: Annotated[str, typer.Argument(metavar="customer|merchant")],
    entity_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="why: a case id, a chargeback, an analyst note")],
    by: Annotated[str, typer.Option(help="who adds it")],
    expires: Annotated[datetime | None, typer.Option(
        help="when it stops applying (UTC); never when omitted", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])] = None,
) -> None:
    """Put a card (customer) or a merchant on the allow or deny list."""
    from datetime import UTC

    from app import lists

    entry = _validated(lists.NewEntry, {"list": kind, "entity": entity, "entity_id": entity_id, "reason": reason,
                                        "added_by": by,
                                        "expires_at": expires.replace(tzinfo=UTC) if expires else None})
    typer.echo(_say(lists.add(get_settings(), entry)))


@lists_cli.command("remove")
def remove(
    entity: Annotated[str, typer.Argument(metavar="customer|merchant")],
    entity_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str, typer.Option(help="who removes it")],
) -> None:
    """Take a card or a merchant off its list (the entry is kept, stamped removed, for replays)."""
    from app import lists

    removed = _validated(lists.RemovedEntry, {"entity": entity, "entity_id": entity_id, "removed_by": by})
    entry = lists.remove(get_settings(), removed)
    typer.echo(f"removed: {_say(entry)}")
