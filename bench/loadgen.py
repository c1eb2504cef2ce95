"""A fast HTTP/1.1 load generator: N worker processes, each with many keep-alive connections.

Each worker is a process with its own uvloop and plain `asyncio.Protocol` connections that send
one fixed-shape POST at a time per connection (no pipelining). This is about 7x faster than an
aiohttp `ClientSession` per core (about 145,000 req/s against a trivial server on one core,
wrk does about 160,000), so the client is never what limits the figures.

Two modes:
- closed loop (`rate=None`): every connection sends its next request as soon as the previous
  answer arrives, for `duration` seconds or until `max_requests` were sent;
- open loop (`rate=R`): requests are due at fixed times (R per second over all workers); a due
  request waits for a free connection if all are busy, and its latency counts from the time it
  was due, so a stalled server cannot hide its stall (no coordinated omission).

Every body carries a unique request id and the time it was sent (`time.monotonic()`, one clock
for every process on the machine), so the receiver of an outgoing webhook can tell which
request it belongs to and how long it took end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

# Request ids are id_base + worker * ID_STRIDE + n: unique per job, worker and request.
ID_STRIDE = 100_000_000
BUCKET_SECONDS = 0.1


@dataclass(frozen=True)
class Job:
    """One load run. `body` is a bytes template with `%(id)d` and `%(t).6f` placeholders."""

    port: int
    path: str
    body: bytes
    connections: int
    duration: float
    rate: float | None = None
    max_requests: int | None = None
    id_base: int = 0
    cpus: tuple[int, ...] | None = None
    drain_timeout: float = 30.0
    host: str = "127.0.0.1"
    start_at: float = 0.0
    # If given, requests take these paths in turn instead of `path` (see `path_index`).
    paths: tuple[str, ...] = ()


def path_index(job: Job, request_id: int) -> int:
    """Which of `job.paths` a request went to: each worker sends its n-th to n mod len (every
    job's `id_base` is a multiple of ID_STRIDE)."""
    return (request_id % ID_STRIDE) % max(1, len(job.paths))


@dataclass
class WorkerResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    accepted_ids: array[int] = field(default_factory=lambda: array("q"))
    ok_buckets: list[int] = field(default_factory=list)
    first_send: float = 0.0
    last_done: float = 0.0


@dataclass
class LoadResult:
    """The merged result of every worker of one job."""

    job: Job
    sent: int
    statuses: dict[int, int]
    errors: dict[str, int]
    latencies: list[float]
    accepted_ids: array[int]
    ok_buckets: list[int]
    first_send: float
    last_done: float

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    @property
    def window(self) -> float:
        return max(self.last_done - self.first_send, 1e-9)

    @property
    def ok_per_second(self) -> float:
        """Answered-200 requests per second, first send to last answer."""
        return self.ok / self.window


class _Worker:
    """The connections of one worker process and the bookkeeping they share."""

    def __init__(self, index: int, workers: int, job: Job):
        self.job = job
        self.result = WorkerResult()
        self.index = index
        self.next_id = job.id_base + index * ID_STRIDE
        share = None
        if job.max_requests is not None:
            share = job.max_requests // workers + (1 if index < job.max_requests % workers else 0)
        self.remaining = share
        self.rate = job.rate / workers if job.rate else None
        self.phase = index / workers  # open loop: workers' due times interleave
        self.end = job.start_at + job.duration
        self.idle: deque[_Conn] = deque()
        self.backlog: deque[float] = deque()
        self.in_flight = 0
        self.stopping = False
        self.all_idle = asyncio.Event()
        self.heads = [(f"POST {path} HTTP/1.1\r\nHost: {job.host}:{job.port}\r\n"
                       "Content-Type: application/json\r\nContent-Length: ").encode()
                      for path in job.paths or (job.path,)]
        buckets = int((job.duration + job.drain_timeout) / BUCKET_SECONDS) + 2
        self.result.ok_buckets = [0] * buckets

    def request_bytes(self, due: float) -> tuple[int, bytes]:
        request_id = self.next_id
        self.next_id += 1
        body = self.job.body % {b"id": request_id, b"t": due}
        head = self.heads[path_index(self.job, request_id)]
        return request_id, b"%s%d\r\n\r\n%s" % (head, len(body), body)

    def may_send(self, now: float) -> bool:
        if self.stopping or now >= self.end:
            return False
        return self.remaining is None or self.remaining > 0

    def take(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1

    def finished(self, conn: _Conn, status: int, request_id: int, due: float) -> None:
        now = time.monotonic()
        result = self.result
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.latencies.append(now - due)
        result.last_done = now
        if status == 200:
            result.accepted_ids.append(request_id)
            bucket = int((now - self.job.start_at) / BUCKET_SECONDS)
            if 0 <= bucket < len(result.ok_buckets):
                result.ok_buckets[bucket] += 1
        self.in_flight -= 1
        self.next_for(conn, now)

    def failed(self, conn: _Conn | None, reason: str) -> None:
        self.result.errors[reason] = self.result.errors.get(reason, 0) + 1
        self.in_flight -= 1
        if conn is None:
            self._check_idle()

    def next_for(self, conn: _Conn, now: float) -> None:
        """Give a free connection its next request: a waiting one, or (closed loop) a new one."""
        if self.backlog:
            self.send(conn, self.backlog.popleft())
        elif self.rate is None and self.may_send(now):
            self.take()
            self.send(conn, now)
        else:
            self.idle.append(conn)
            self._check_idle()

    def _check_idle(self) -> None:
        if self.in_flight == 0 and not self.backlog:
            self.all_idle.set()

    def send(self, conn: _Conn, due: float) -> None:
        now = time.monotonic()
        if self.result.sent == 0:
            self.result.first_send = now
        # Closed loop: the body carries the real send time; open loop: the time it was due.
        request_id, data = self.request_bytes(due if self.rate else now)
        self.result.sent += 1
        self.in_flight += 1
        self.all_idle.clear()
        conn.send(data, request_id, due if self.rate else now)

    def issue(self, due: float) -> None:
        """Open loop: a request is due now; send it on a free connection or queue it."""
        self.take()
        if self.idle:
            self.send(self.idle.popleft(), due)
        else:
            self.backlog.append(due)
            self.all_idle.clear()


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, worker: _Worker):
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.request_id = 0
        self.due = 0.0
        self.busy = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def send(self, data: bytes, request_id: int, due: float) -> None:
        assert self.transport is not None
        self.request_id, self.due, self.busy = request_id, due, True
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end]
        length = 0
        at = head.lower().find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop > 0 else None])
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return
        self.buffer = buffer[end + 4 + length:]
        self.busy = False
        close = b"connection: close" in head.lower()
        self.worker.finished(self, int(head[9:12]), self.request_id, self.due)
        if close and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.busy = False
            self.worker.failed(None, "connection_lost")
        with contextlib.suppress(ValueError):
            self.worker.idle.remove(self)
        if not self.lost.done():
            self.lost.set_result(None)


async def _open(worker: _Worker) -> _Conn:
    loop = asyncio.get_running_loop()
    job = worker.job
    _, conn = await loop.create_connection(lambda: _Conn(worker), job.host, job.port)
    return conn


async def _keep_connected(worker: _Worker, conn: _Conn) -> None:
    """Closed connections (server restarts, `Connection: close`) are replaced while running."""
    while True:
        await conn.lost
        if worker.stopping or time.monotonic() >= worker.end:
            return
        try:
            conn = await _open(worker)
        except OSError:
            worker.result.errors["connect_failed"] = worker.result.errors.get(
                "connect_failed", 0) + 1
            await asyncio.sleep(0.1)
            continue
        worker.next_for(conn, time.monotonic())


async def _open_loop(worker: _Worker) -> None:
    assert worker.rate is not None
    start, interval = worker.job.start_at, 1.0 / worker.rate
    issued = 0
    while True:
        now = time.monotonic()
        while worker.may_send(now):
            due = start + (issued + worker.phase) * interval
            if due > now:
                break
            worker.issue(due)
            issued += 1
        if not worker.may_send(now):
            return
        await asyncio.sleep(min(0.001, max(0.0, start + (issued + worker.phase) * interval - now)))


async def run_job(index: int, workers: int, job: Job) -> WorkerResult:
    """One worker's part of a job, in the worker process."""
    worker = _Worker(index, workers, job)
    conns = [await _open(worker) for _ in range(job.connections)]
    keepers = [asyncio.create_task(_keep_connected(worker, c)) for c in conns]
    await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
    if worker.rate is None:
        for conn in conns:
            worker.next_for(conn, time.monotonic())
    else:
        worker.idle.extend(conns)
        await _open_loop(worker)
    if worker.in_flight == 0 and not worker.backlog:
        worker.all_idle.set()
    remaining = worker.end - time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.all_idle.wait(), max(0.0, remaining) + job.drain_timeout)
    worker.stopping = True
    if worker.in_flight:
        worker.result.errors["unanswered"] = worker.in_flight
    for task in keepers:
        task.cancel()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return worker.result


def _worker_main(index: int, workers: int, pipe: Connection) -> None:
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    all_cpus = os.sched_getaffinity(0)
    while True:
        job: Job | None = pipe.recv()
        if job is None:
            return
        os.sched_setaffinity(0, set(job.cpus) if job.cpus else all_cpus)
        try:
            pipe.send(uvloop.run(run_job(index, workers, job)))
        except Exception as exc:
            pipe.send(f"load generator worker {index} failed: {exc!r}")


class LoadGenerator:
    """A pool of worker processes started once and given one job at a time."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        for index in range(self.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(index, self.workers, child),
                               name=f"bench-loadgen-{index}", daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self._procs]

    async def run(self, job: Job, lead: float = 0.5) -> LoadResult:
        """Run `job` on every worker at once (they start together `lead` s from now)."""
        job = _with_start(job, time.monotonic() + lead + job.connections * 0.0002)
        for pipe in self._pipes:
            pipe.send(job)
        answers = [await asyncio.to_thread(p.recv) for p in self._pipes]
        failed = [a for a in answers if isinstance(a, str)]
        if failed:
            raise RuntimeError("; ".join(failed))
        return merge(job, answers)

    def stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in self._procs:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        self._pipes.clear()
        self._procs.clear()


def _with_start(job: Job, start_at: float) -> Job:
    values = {name: getattr(job, name) for name in job.__dataclass_fields__}
    values["start_at"] = start_at
    return Job(**values)


def merge(job: Job, results: list[WorkerResult]) -> LoadResult:
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    latencies: list[float] = []
    ids: array[int] = array("q")
    buckets = [0] * max(len(r.ok_buckets) for r in results)
    for r in results:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        for reason, count in r.errors.items():
            errors[reason] = errors.get(reason, 0) + count
        latencies.extend(r.latencies)
        ids.extend(r.accepted_ids)
        for i, count in enumerate(r.ok_buckets):
            buckets[i] += count
    started = [r.first_send for r in results if r.sent]
    done = [r.last_done for r in results if r.sent]
    while buckets and buckets[-1] == 0:
        buckets.pop()
    return LoadResult(job=job, sent=sum(r.sent for r in results), statuses=statuses,
                      errors=errors, latencies=latencies, accepted_ids=ids, ok_buckets=buckets,
                      first_send=min(started, default=job.start_at),
                      last_done=max(done, default=job.start_at))
