"""Casewire in its production topology on one machine: the image (`make image`), a three-node
RabbitMQ cluster, a Postgres primary with a synchronous standby, two replicas of each service
started from the image, and the faults of `make topology` (docs/scale.md)."""
