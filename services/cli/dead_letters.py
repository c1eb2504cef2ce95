"""`casewire dead-letters list|show|requeue|purge`: the dead-letter queue from a terminal.

How the queue is read without losing or reordering anything: services/cli/dead_letter_queue.py.
A requeue or purge is recorded in the audit log afterwards, with the caller as its actor
(services/cli/api.py); it needs an admin's token for that.
"""

import argparse
from typing import Any

import orjson

from services.cli import dead_letter_queue
from services.cli.api import record_change
from services.cli.dead_letter_queue import DeadLetter
from services.cli.output import say, table
from services.cli.queues import broker_connection
from shared import broker_topology
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.settings import Settings

ERROR_SHOWN = 80  # characters of the error in a listing (`show` has all of it)


def _filters(args: argparse.Namespace) -> dict[str, str | None]:
    return {"event_type": getattr(args, "type", None), "queue": getattr(args, "queue", None),
            "reason": getattr(args, "reason", None)}


def _selected(letters: list[DeadLetter], args: argparse.Namespace) -> list[DeadLetter]:
    wanted = getattr(args, "id", None)
    return [letter for letter in letters
            if (wanted is None or letter.id == wanted) and letter.matches(**_filters(args))]


def _short(error: str | None) -> str | None:
    if error is None or len(error) <= ERROR_SHOWN:
        return error
    return error[:ERROR_SHOWN - 3] + "..."


async def _looked_at(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    """The dead letters the filters select, each handed back to the queue in its place."""
    names = broker_topology.Names(settings.name_prefix)
    async with broker_connection(settings) as connection:
        channel = await connection.channel()
        async with dead_letter_queue.held(channel, names.dead_letters) as taken:
            return _selected(taken.letters, args)


async def list_letters(settings: Settings, args: argparse.Namespace) -> int:
    found = await _looked_at(settings, args)
    rows = [(d.id, d.time.isoformat(timespec="seconds") if d.time else None, d.reason, d.queue,
             d.type, _short(d.error)) for d in found[:args.limit]]
    table(("id", "time", "reason", "queue", "type", "error"), rows,
          empty="no dead letters" + (" match" if any(_filters(args).values()) else ""))
    if len(found) > args.limit:
        say(f"{len(found) - args.limit} more not shown (--limit)")
    return 0


def _readable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _body(raw: bytes) -> str:
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


async def show(settings: Settings, args: argparse.Namespace) -> int:
    found = await _looked_at(settings, args)
    if not found:
        say(f"no dead letter has id {args.id}")
        return 1
    letter, message = found[0], found[0].message
    table(("", ""), [
        ("id", letter.id), ("reason", letter.reason), ("queue", letter.queue),
        ("type", letter.type), ("time", letter.time), ("error", letter.error),
        ("routing key", message.routing_key), ("correlation id", message.correlation_id),
        ("content type", message.content_type),
        ("headers", orjson.dumps(message.headers or {}, default=_readable).decode())],
        empty="")
    say(_body(message.body))
    if len(found) > 1:
        say(f"({len(found)} dead letters have this id: the same message, dead-lettered again)")
    return 0


async def requeue(settings: Settings, args: argparse.Namespace) -> int:
    names = broker_topology.Names(settings.name_prefix)
    done: list[tuple[str, str | None, str]] = []
    async with broker_connection(settings) as connection:
        channel = await connection.channel(on_return_raises=True)
        async with dead_letter_queue.held(channel, names.dead_letters) as taken:
            for letter in _selected(taken.letters, args):
                if letter.queue is None:
                    done.append((letter.id, None, "kept: the queue it came from is not known"))
                    continue
                await dead_letter_queue.requeue(channel, letter)
                await taken.remove(letter)
                done.append((letter.id, letter.queue, "requeued"))
    table(("id", "queue", "result"), done, empty="no dead letters match: nothing requeued")
    requeued = [letter_id for letter_id, _, result in done if result == "requeued"]
    if requeued:
        await _recorded(settings, "dead_letters.requeued", names.dead_letters,
                        {"count": len(requeued), "ids": requeued[:100]})
    if args.id and not done:
        return 1
    return 0


async def purge(settings: Settings, args: argparse.Namespace) -> int:
    names = broker_topology.Names(settings.name_prefix)
    async with broker_connection(settings) as connection:
        channel = await connection.channel()
        if not any(_filters(args).values()):
            purged = await (await channel.get_queue(names.dead_letters)).purge()
            say(f"{purged.message_count} dead letter(s) removed")
            await _recorded(settings, "dead_letters.purged", names.dead_letters,
                            {"count": purged.message_count})
            return 0
        async with dead_letter_queue.held(channel, names.dead_letters) as taken:
            found = _selected(taken.letters, args)
            for letter in found:
                await taken.remove(letter)
    say(f"{len(found)} dead letter(s) removed")
    if found:
        await _recorded(settings, "dead_letters.purged", names.dead_letters,
                        {"count": len(found), "ids": [letter.id for letter in found][:100],
                         "filters": {k: v for k, v in _filters(args).items() if v}})
    return 0


async def _recorded(settings: Settings, action: str, queue: str, detail: dict[str, Any]) -> None:
    """In the audit log, after the fact: the broker's change has no transaction to share."""
    try:
        await record_change(settings, action, queue, detail)
    except (ConfigurationError, DependencyUnavailable) as exc:
        raise type(exc)(f"done, but not recorded in the audit log: {exc}") from exc


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a `dead-letters` command line, if anything."""
    if args.action == "requeue" and not (args.id or args.all or any(_filters(args).values())):
        return "requeue needs an ID, a filter (--type, --queue, --reason) or --all"
    if args.action == "requeue" and args.id and (args.all or any(_filters(args).values())):
        return "requeue takes an ID or filters, not both"
    if args.action == "purge" and not args.yes:
        return "purge removes dead letters for good: add --yes"
    return None


def _filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", help="only messages of this event type (case.create_requested)")
    parser.add_argument("--queue", help="only those from this queue (full name, or casestore)")
    parser.add_argument("--reason", help="only those dead-lettered for this reason "
                        "(unparseable, invalid, permanent, delivery_limit, rejected, maxlen)")


def add_parsers(sub: Any) -> argparse.ArgumentParser:
    """`dead-letters` and its actions; returns its parser, for usage_problem."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "dead-letters", help="list, show, requeue or purge the dead-letter queue")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="each dead letter: id, time, reason, queue, type, "
                                 "error (oldest first)")
    _filter_options(listing)
    listing.add_argument("--limit", type=int, default=100)
    one = actions.add_parser("show", help="one dead letter whole: properties, headers, body")
    one.add_argument("id")
    again = actions.add_parser("requeue", help="back to the queue each came from (one by ID, "
                               "or all matching the filters)")
    again.add_argument("id", nargs="?")
    again.add_argument("--all", action="store_true", help="every dead letter (with filters: "
                       "every one matching)")
    _filter_options(again)
    gone = actions.add_parser("purge", help="remove dead letters for good (all, or those "
                              "matching the filters)")
    gone.add_argument("--yes", action="store_true", help="yes, remove them")
    _filter_options(gone)
    return parser


async def dead_letters_command(settings: Settings, args: argparse.Namespace) -> int:
    commands = {"list": list_letters, "show": show, "requeue": requeue, "purge": purge}
    if args.action not in commands:
        raise ConfigurationError(f"unknown action {args.action}")
    return await commands[args.action](settings, args)
