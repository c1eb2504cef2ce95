"""structlog configuration: JSON lines, with context (correlation id, event id) from contextvars."""

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog

# What a correlation id may be: printable ASCII without spaces, at most 128 characters (it
# travels as an AMQP short string, at most 255 bytes, and in every log line).
CORRELATION_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def correlation_id_or_new(value: str | None) -> str:
    """`value` if it is a usable correlation id, else a new one."""
    if value is not None and CORRELATION_ID.match(value):
        return value
    return str(uuid.uuid4())


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def _encodable(value: Any) -> Any:
    """A header that is not UTF-8 arrives as a string with surrogate escapes, which neither
    orjson nor a UTF-8 stdout can write: a log line must never be what fails a request."""
    if isinstance(value, str):
        if value.isascii():
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def _make_encodable(_: Any, __: str, event_dict: MutableMapping[str, Any]
                    ) -> Mapping[str, Any]:
    return {key: _encodable(value) for key, value in event_dict.items()}


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _make_encodable,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Library loggers (aiohttp access, aio-pika reconnects) go to stderr at WARNING and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


@contextmanager
def bound_context(**values: Any) -> Iterator[None]:
    """Bind log context for one request or message, and reset it afterwards."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def bound_correlation_id() -> str | None:
    """The correlation id bound for the current request or message, if any."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(value) if value is not None else None
