"""What the CLI prints from messages and answers cannot drive the operator's terminal."""

import uuid

import aio_pika

from shared.events import CASE_CREATE_REQUESTED
from shared.settings import Settings
from tests.test_cli_operations import Run, casewire, eventually

__all__ = ["casewire"]  # the fixture used here
# Set the window title, ring the bell, clear the screen, go back to the start of the line.
CRAFTED = "\x1b]0;pwned\x07\x1b[2J\r"
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u202e")


async def test_dead_letters_print_control_characters_escaped(
        casewire: Run, settings: Settings) -> None:
    marker = uuid.uuid4().hex
    message_id = f"evil-{marker}{CRAFTED}\u202e"
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{settings.name_prefix}.events")
        await exchange.publish(aio_pika.Message(
            f"{CRAFTED}not an envelope {marker}".encode(), message_id=message_id,
            type=f"case.{CRAFTED}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=CASE_CREATE_REQUESTED)

    async def listing() -> list[list[str]]:
        code, out = await casewire("dead-letters", "list")
        assert code == 0, out
        return [line.split() for line in out.splitlines() if marker in line]

    [row] = await eventually(listing)
    escaped_id = row[0]
    assert escaped_id == f"evil-{marker}\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\u202e"
    _, out = await casewire("dead-letters", "list")
    assert not any(c in out for c in RAW_CONTROLS)
    assert "case.\\x1b]0;pwned" in out
    code, shown = await casewire("dead-letters", "show", message_id)
    assert code == 0, shown
    assert f"\\x1b]0;pwned\\x07\\x1b[2J\\x0dnot an envelope {marker}" in shown
    assert not any(c in shown for c in RAW_CONTROLS)
    code, _ = await casewire("dead-letters", "purge", "--yes", "--type", f"case.{CRAFTED}")
    assert code == 0
