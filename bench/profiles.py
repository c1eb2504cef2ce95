"""How long and how hard each step runs: `default` (about 9 minutes) and `quick` (under 2)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # Load generator
    workers: int = 1              # load generator processes (on 2 cores one is plenty)
    # Ingest processes on one port (CASEWIRE_INGEST_WORKERS); 1, as `make run` starts by default.
    ingest_workers: int = 1
    connections: int = 128        # keep-alive connections per worker at saturation
    open_loop_connections: int = 64
    # Limits
    ceiling_seconds: float = 3.0
    http_seconds: float = 4.0
    http_asyncio: bool = True        # also bare aiohttp on the default loop (what uvloop gives)
    broker_seconds: float = 2.0
    broker_concurrency: tuple[int, ...] = (1, 16, 64, 128, 256, 512)
    db_seconds: float = 2.0
    db_single_connections: tuple[int, ...] = (1, 16, 32)
    db_executemany: tuple[tuple[int, int], ...] = ((1, 500), (2, 500), (4, 500), (2, 2000))
    db_copy: tuple[tuple[int, int], ...] = ((1, 1000), (2, 1000), (2, 5000))
    # Casewire
    warmup_seconds: float = 2.0
    ingest_seconds: float = 8.0     # saturation: closed loop, then wait until all are stored
    latency_seconds: float = 8.0    # open loop at 50% of the saturated rate
    delivery_burst: int = 10_000     # requests sent as fast as possible, until all delivered
    moderate_rate: float = 200.0     # fixed rate for POST-to-arrival latency and the soak
    soak_seconds: float = 100.0      # at the moderate rate: latency and memory over time
    drain_timeout: float = 120.0     # longest wait for the last case / delivery
    isolation_seconds: float = 20.0  # each isolation phase (healthy alone, then beside a hang)
    timers_pending: int = 1_000_000  # timers in the table for the claim and the burst
    timers_burst: int = 10_000       # of them falling due at once
    distant_cases: int = 400         # posted to each distant receiver (bench/distant.py)
    distant_rate: float = 200.0      # at this rate
    distant_outage: bool = True      # and the 20 s outage (about 3 minutes)
    floor_cases: int = 3000          # per round of the floor beside Casewire (bench/floor.py)
    floor_rounds: int = 2


DEFAULT = Profile(name="default")

QUICK = Profile(
    name="quick",
    ceiling_seconds=1.0,
    http_seconds=1.5,
    http_asyncio=False,
    broker_seconds=1.0,
    broker_concurrency=(1, 256),
    db_seconds=1.0,
    db_single_connections=(1, 16),
    db_executemany=((2, 500),),
    db_copy=((2, 1000),),
    warmup_seconds=0.5,
    ingest_seconds=1.5,
    latency_seconds=1.5,
    delivery_burst=1_500,
    soak_seconds=6.0,
    drain_timeout=60.0,
    isolation_seconds=5.0,
    timers_pending=50_000,
    timers_burst=5_000,
    distant_cases=200,
    distant_rate=100.0,
    distant_outage=False,
    floor_cases=1000,
    floor_rounds=1,
)

PROFILES = {p.name: p for p in (DEFAULT, QUICK)}
