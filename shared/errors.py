"""The few exception types that cross service boundaries."""


class DependencyUnavailable(Exception):
    """Postgres or RabbitMQ cannot be reached or did not confirm in time."""


class BrokerUnavailable(DependencyUnavailable):
    """RabbitMQ did not take a publish: the connection was away, or the broker refused it (a
    nack: a quorum queue without a leader while a node is lost or rejoins). Never the
    message's own fault, whatever the database says."""


class OutcomeUnknown(BrokerUnavailable):
    """A message was handed to the broker but its confirm never came: it may have been routed.

    Still an outage to whoever retries anyway; only an answer to a client must not claim that
    nothing happened.
    """


class Unroutable(DependencyUnavailable):
    """The broker returned a message no queue is bound to (a mandatory publish)."""


class PermanentMessageError(Exception):
    """A message that will never succeed: dead-letter it instead of requeueing."""


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message names the CASEWIRE_* variable to set."""
