"""Settings shared by every service, read once from `CASEWIRE_*` environment variables."""

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One typed settings object, built in `__main__` and passed down; never read at import."""

    model_config = SettingsConfigDict(env_prefix="CASEWIRE_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/casewire"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The nodes of a RabbitMQ cluster, comma-separated: a service connects to the first that
    # answers and, when its node goes, to the next (shared/broker.py), where one URL would
    # leave it retrying a dead node. Empty: CASEWIRE_AMQP_URL alone (which the CLI uses).
    amqp_urls: str = ""
    # Exchanges and queues live under this prefix so a dev stack and a test run never collide.
    name_prefix: str = "casewire"
    # No default: an admin API must never start with a guessable token (`make run` makes one).
    # Every service refuses one shorter than 32 characters: it also signs in to the console.
    admin_token: str = Field(default="", repr=False)
    # Signs expiring URLs (file downloads, returnDataURL); no default, like the admin token.
    signing_key: str = Field(default="", repr=False)
    # Fernet keys, comma-separated, that encrypt stored passwords and signing secrets: the
    # first encrypts, all decrypt (shared/crypto.py). Every service needs it (ingest for
    # the secrets signed incoming webhooks are checked with).
    encryption_key: str = Field(default="", repr=False)
    public_base_url: str = "http://127.0.0.1:8081"
    casestore_url: str = "http://127.0.0.1:8082"
    dispatcher_url: str = "http://127.0.0.1:8083"
    # Where receivers download files sent by outgoing webhooks: casestore's /files/, exposed
    # publicly. Empty means CASEWIRE_CASESTORE_URL (fine when that is reachable by receivers).
    public_files_url: str = ""
    host: str = "127.0.0.1"
    ingest_port: int = 8081
    # How many ingest processes `casewire run` starts on ingest_port (one per core is the most
    # that helps); in Kubernetes, scale the ingest Deployment instead.
    ingest_workers: int = Field(default=1, ge=1, le=64)
    casestore_port: int = 8082
    dispatcher_port: int = 8083
    log_level: str = "INFO"
    log_json: bool = True

    db_pool_min: int = 2
    db_pool_max: int = 10
    prefetch: int = 64
    # A poison message is dead-lettered after this many deliveries instead of looping forever.
    delivery_limit: int = 5
    # The dead-letter queue keeps at most this many messages (the oldest go first); it is set
    # when the queue is created (`casewire queues --recreate-dead-letters` applies a new value).
    dead_letter_max: PositiveInt = 100_000
    publish_timeout: PositiveFloat = 5.0
    # On shutdown, how long consumers wait for messages in hand (e.g. a delivery being sent).
    shutdown_grace_seconds: NonNegativeFloat = 20.0
    connect_timeout: PositiveFloat = 10.0
    # Through a database (or peer) outage a consumer holds its messages and probes the
    # dependency at most this far apart; a message held this long is handed back uncounted,
    # before RabbitMQ's consumer timeout (30 minutes by default) would close the channel.
    outage_retry_seconds: PositiveFloat = 30.0
    outage_hold_seconds: PositiveFloat = 900.0

    max_body_bytes: int = 1_048_576
    # Token bucket per incoming webhook, per ingest process.
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    outbox_batch: int = 200
    outbox_poll_seconds: float = 1.0
    # Ingest re-reads every form this often in case a form.changed event was missed.
    form_reload_seconds: float = 30.0
    # Auth-key requests: wrong passwords allowed per minute per username and per client
    # address before 429; argon2 hashes at once (64 MiB each), and how long a request waits
    # for one before 503.
    login_failures_per_user_per_minute: PositiveInt = 5
    login_failures_per_address_per_minute: PositiveInt = 20
    password_hash_concurrency: PositiveInt = 2
    password_hash_wait_seconds: PositiveFloat = 5.0
    # Console sign-in (per casestore process): wrong admin tokens allowed per minute from one
    # client address, and from all addresses together, before 429. The second bounds a
    # guesser with many addresses; the admin API (its own token) is not affected.
    console_sign_in_failures_per_address_per_minute: PositiveInt = 10
    console_sign_in_failures_per_minute: PositiveInt = 100
    # Networks of the proxies in front of the services (the Ingress), as CIDRs. Only a
    # connection from one of them may name the client (X-Forwarded-For, which the login
    # throttles key on) and the scheme (X-Forwarded-Proto: the console cookie's Secure flag);
    # empty: the connecting address is the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Slow clients: a request's head must arrive within header_timeout_seconds of its first
    # byte (or of the connection, for the first), its body within body_timeout_seconds of the
    # handler asking for it; beyond max_connections per process, new connections are closed
    # at once. A client trickling a byte every few seconds otherwise held its connection,
    # and a file descriptor, for as long as it liked.
    header_timeout_seconds: PositiveFloat = 10.0
    body_timeout_seconds: PositiveFloat = 30.0
    max_connections: PositiveInt = 1000
    # Database look-ups per second, per ingest process, of webhook tokens not in its cache (for
    # webhooks made a moment ago); other unknown tokens are answered 404 from memory.
    token_lookups_per_second: PositiveFloat = 5.0
    # How long an incoming webhook's Idempotency-Key holds; after that it may make a new case.
    idempotency_ttl_seconds: PositiveFloat = 86_400

    # Outgoing webhooks.
    # Private, loopback and link-local targets are refused unless inside one of these networks.
    outgoing_allow_networks: list[str] = Field(default_factory=list)
    # A change caused by automations this many levels deep fires nothing more.
    automation_max_depth: int = 3
    # Delivery engine. Every wait of the delivery schedule (backoff, the extended schedule,
    # circuit cool-downs, disabling after days of failures) is multiplied by this; tests make
    # 27 hours pass in seconds.
    retry_time_scale: PositiveFloat = 1.0
    # Requests in flight per automation (endpoint) in one dispatcher: the limit starts at
    # endpoint_initial_concurrency and adapts to how the endpoint answers
    # (services/dispatcher/limits.py), never above the automation's `max_in_flight` or, if it
    # sets none, endpoint_concurrency. casestore hands out up to twice the limit a dispatcher
    # last reported of an endpoint's attempts ahead (in flight, or waiting in a dispatcher for
    # room), so that the hops between attempts do not leave it idle; at least endpoint_window,
    # at most twice the ceiling.
    endpoint_concurrency: int = Field(default=100, ge=1, le=1000)
    endpoint_initial_concurrency: int = Field(default=10, ge=1, le=1000)
    endpoint_window: PositiveInt = 32
    # How long a first attempt may expect to wait in the dispatcher that fired it for one of
    # those slots (from the endpoint's recent answer times) rather than go through the
    # schedule; 0: only when a slot is free.
    first_attempt_wait_seconds: NonNegativeFloat = 1.0
    # A first attempt the endpoint should answer within half of this (by its recent attempts
    # from that dispatcher) starts before its request goes out, and the request waits for it
    # up to this long, to take its report along. The case event holds its prefetch slot
    # meanwhile, so only an endpoint that answers at once is worth it; 0: never.
    report_wait_seconds: NonNegativeFloat = 0.2
    # Consecutive failed attempts that pause an endpoint, and the first pause's length.
    breaker_failures: PositiveInt = 5
    breaker_cooldown_seconds: PositiveFloat = 60.0
    # An automation whose deliveries have all failed for this long is disabled.
    disable_after_days: PositiveFloat = 5.0
    # casestore hands an attempt out again if no outcome came this long after its timeout.
    delivery_lease_margin_seconds: PositiveFloat = 60.0
    # How often casestore's delivery scheduler looks for due attempts (it also wakes on NOTIFY).
    delivery_poll_seconds: PositiveFloat = 1.0
    # Time-based triggers: timers announced per transaction, and the longest sleep between
    # looks at the timers table (the scheduler otherwise wakes when the next one is due).
    timer_batch: PositiveInt = 1000
    timer_poll_seconds: PositiveFloat = 1.0
    # How often the dispatcher reads the delivery backlog, paused endpoints and disabled
    # automations from Postgres for /metrics (one small query each).
    metrics_refresh_seconds: PositiveFloat = 15.0
    # How often every service reads queue depths from the broker (and casestore the outbox's
    # backlog from Postgres) for /metrics; a scrape only reads the last values.
    pipeline_metrics_seconds: PositiveFloat = 5.0
    # How long a rotated signing secret keeps signing beside the new one, by default.
    secret_overlap_hours: NonNegativeFloat = 24.0

    # Retention (services/casestore/retention.py): days kept, 0 keeps forever. Idempotency-Key
    # records go when they expire. Each casestore purges every interval, in batches.
    retention_processed_events_days: NonNegativeFloat = 30.0
    retention_delivery_attempts_days: NonNegativeFloat = 30.0
    retention_deliveries_days: NonNegativeFloat = 30.0
    retention_outbox_parked_days: NonNegativeFloat = 30.0
    # The audit log is kept longer: a year answers "who changed this, and when?" for most.
    retention_audit_log_days: NonNegativeFloat = 365.0
    retention_interval_seconds: PositiveFloat = 600.0
    retention_batch: int = Field(default=1000, ge=1, le=100_000)

    retry_backoff_seconds: PositiveFloat = 2.0
    retry_backoff_max_seconds: PositiveFloat = 30.0
    # A receiver's Retry-After is honoured up to this many seconds.
    retry_after_cap_seconds: NonNegativeFloat = 60.0
    response_excerpt_bytes: int = 65_536
    # The seed's lifetimes of file URLs (24 h) and returnDataURLs (2 h).
    file_url_ttl_seconds: float = 86_400
    return_url_ttl_seconds: float = 7_200

    @property
    def broker_urls(self) -> list[str]:
        """The broker nodes in the order they are tried."""
        listed = [url.strip() for url in self.amqp_urls.split(",") if url.strip()]
        return listed or [self.amqp_url]
