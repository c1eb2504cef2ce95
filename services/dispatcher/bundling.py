"""Requests and reports to casestore, many to a message.

A broker message costs the publisher, the broker and casestore far more than its bytes, and
under load many cases fire at once. Whatever callers hand in while a message is being
confirmed goes out together in the next one (shared/batcher.py): a lone item waits for
nothing, and each caller returns once the message holding its item is confirmed.
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from pydantic import BaseModel

from shared.batcher import Batcher
from shared.broker import Publisher
from shared.events import new_event

T = TypeVar("T", bound=BaseModel)

# Items per message. A request carries its case (at most the incoming body limit), so a full
# message stays far below RabbitMQ's message size limit.
BUNDLE_LIMIT = 32


class Bundler(Generic[T]):
    def __init__(self, publisher: Publisher, event_type: str,
                 wrap: Callable[[list[T]], BaseModel]):
        self._publisher = publisher
        self._type = event_type
        self._wrap = wrap
        self._batcher: Batcher[T, None] = Batcher(event_type, self._publish, BUNDLE_LIMIT)

    def running(self) -> AbstractAsyncContextManager[None]:
        return self._batcher.running()

    async def send(self, item: T) -> None:
        """Returns once the broker confirmed the message holding the item; raises
        DependencyUnavailable (or what the publish raised) otherwise."""
        await self._batcher.submit(item)

    async def _publish(self, items: list[T]) -> list[Exception | None]:
        await self._publisher.publish(new_event(self._type, self._wrap(items)))
        return [None] * len(items)
