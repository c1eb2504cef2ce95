"""structlog configuration: JSON lines, with context (correlation id, event id) from contextvars.

Every line goes through structlog, the standard library's included (aiohttp's own loggers,
aio-pika's), and through `mask_secrets` last: aiohttp logs a request it cannot parse with its
whole request line, and a webhook's URL is its secret.
"""

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog

# A webhook token in a path (`/hooks/<token>`), a signed URL's signature and a bearer token:
# of each, a log line keeps SHOWN characters, enough to tell them apart and far too few to use.
SHOWN = 4
_PART = r"[^/?&\s'\"\\]"  # up to the next delimiter of a URL, a header or a repr()
SECRETS = re.compile(rf"(/hooks/|signature=|Bearer )({_PART}{{1,{SHOWN}}}){_PART}*")


def masked(token: str) -> str:
    """Enough of a secret to tell it apart in a log line, far too little to use it."""
    return token[:SHOWN] + "…"


def mask_secrets(text: str) -> str:
    """`text` with every webhook token, URL signature and bearer token in it masked."""
    return SECRETS.sub(lambda m: m.group(1) + masked(m.group(2)), text)


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


def _writable(value: Any) -> Any:
    """The value as a log line may hold it: secrets masked, and text encodable (a header that
    is not UTF-8 arrives as a string with surrogate escapes, which neither orjson nor a UTF-8
    stdout can write: a log line must never be what fails a request)."""
    if isinstance(value, str):
        if not value.isascii():
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v) for v in value]
    return value


def _make_writable(_: Any, __: str, event_dict: MutableMapping[str, Any]
                   ) -> Mapping[str, Any]:
    return {key: _writable(value) for key, value in event_dict.items()}


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    common: list[Any] = [structlog.contextvars.merge_contextvars,
                         structlog.processors.add_log_level,
                         structlog.processors.TimeStamper(fmt="iso", utc=True)]
    last: list[Any] = [structlog.processors.format_exc_info, _make_writable, renderer]
    structlog.configure(
        processors=[*common, *last],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Library loggers (aiohttp's server, aio-pika's reconnects) at WARNING and above, as the
    # same lines on stdout: `logger` names the library.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*common, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


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
