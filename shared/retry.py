"""Bounded retry policies (tenacity), so no loop in Casewire retries forever."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _log_retry(dependency: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("dependency_retry", dependency=dependency, attempt=state.attempt_number,
                    error=repr(exc))

    return before_sleep


def startup_retry(
    dependency: str, attempts: int = 5
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Retry connecting to a dependency a few times at start-up, then re-raise."""
    decorator: Any = retry(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception_type((OSError, TimeoutError, ConnectionError)),
        before_sleep=_log_retry(dependency),
        reraise=True,
    )
    return decorator  # type: ignore[no-any-return]
