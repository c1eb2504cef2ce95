"""The few exception types that cross service boundaries."""


class DependencyUnavailable(Exception):
    """Postgres or RabbitMQ cannot be reached or did not confirm in time."""


class Unroutable(DependencyUnavailable):
    """The broker returned a message no queue is bound to (a mandatory publish)."""


class PermanentMessageError(Exception):
    """A message that will never succeed: dead-letter it instead of requeueing."""


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message names the CASEWIRE_* variable to set."""
