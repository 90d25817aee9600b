"""Bounded queue + one batching writer task. Rows leave the queue only after their commit.

The task hands each batch to a `BatchWriter`: `StoreWriter` parses and commits it on this event
loop; proxy/gateway/writer.py's `ProcessWriter` sends it to a writer process that does the same
off the loop and answers once the batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, Protocol

from proxy.gateway.exchange import Exchange, fallback_row
from storage import Row, Store
from storage.errors import RowRejected

log = logging.getLogger("relaylog.recorder")

RETRY_START_S = 0.05
# A queue this full reports the service unready, so a load balancer sends calls elsewhere.
BACKLOG_SHARE = 0.9
DROP_WARN_EVERY_S = 10.0
# A small batch waits this long for more rows: one commit per ~5 ms instead of one per request
# keeps the per-commit cost off the calls it logs. Longer lingers make larger batches, whose
# commit is a longer burst of the writer's CPU: at one connection on 2 cores, 20 ms took the
# p99 to ~+3.2 ms over the bare proxy, 5 ms to ~+1.7 ms, at the same CPU per call under full
# load (where the previous commit's length sets the batch); 2 ms cost ~10% more CPU per call.
LINGER_S = 0.005
# Rows parsed between yields to the event loop, so a large batch never stalls requests for long.
CONVERT_SLICE = 16
# An exchange holding more body bytes than this is converted off the event loop.
OFF_LOOP_BYTES = 256 * 1024


def _count_down(counts: dict[str, int], key: str) -> int:
    """Take one off `key`'s count, dropping the key at zero; what is left."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
        return left
    counts.pop(key, None)
    return 0


class BatchWriter(Protocol):
    """Commits batches of exchanges; the recorder retries a batch whose commit raised."""

    def prepare(self, batch: list[Exchange]) -> Any:
        """What `commit` takes for this batch, made once however often the commit is retried."""

    async def commit(self, prepared: Any) -> int:
        """Write the batch; the number of exchanges the store refused for good (dropped)."""

    async def close(self) -> None: ...


class StoreWriter:
    """Parses exchanges into rows and commits them through the store, on the calling loop."""

    def __init__(self, store: Store, to_row: Callable[[Exchange], Row]) -> None:
        self.store = store
        self.to_row = to_row

    def convert(self, exchange: Exchange) -> Row:
        try:
            return self.to_row(exchange)
        except Exception:
            log.exception("could not parse exchange %s; storing it unparsed", exchange.id)
            return fallback_row(exchange)

    def prepare(self, batch: list[Exchange]) -> list[Exchange]:
        return batch

    async def rows(self, batch: Sequence[Exchange]) -> list[Row]:
        """The batch's rows; a reused id replaces the exchange, so only its last row counts."""
        rows = []
        for n, exchange in enumerate(batch):
            if exchange.captured_bytes > OFF_LOOP_BYTES:
                # Large bodies are parsed in a thread: the loop waits at most a GIL interval.
                rows.append(await asyncio.to_thread(self.convert, exchange))
                continue
            if n and n % CONVERT_SLICE == 0:
                await asyncio.sleep(0)
            rows.append(self.convert(exchange))
        return list({row.id: row for row in rows}.values())

    async def commit(self, prepared: list[Exchange]) -> int:
        rows = await self.rows(prepared)
        try:
            await self.store.write_batch(rows)
        except RowRejected as exc:
            log.warning(
                "log write of %d rows refused (%s); writing them one by one", len(rows), exc
            )
            # A row the store refuses must not hold up the queue.
            return await self._write_one_by_one(rows)
        return 0

    async def _write_one_by_one(self, rows: list[Row]) -> int:
        """Write each row alone; one the store refuses is kept without its bodies, or dropped.

        Raises when a write fails for another reason (the batch is then retried whole).
        """
        refused = 0
        for row in rows:
            try:
                await self.store.write_batch([row])
                continue
            except RowRejected as exc:
                reason = str(exc)
            bare = dataclasses.replace(
                row,
                request_body=None,
                response_body=None,
                request_headers=None,
                properties={},
                prompt_tokens=None,
                completion_tokens=None,
                total_tokens=None,
                cached_tokens=None,
                cost_usd=None,
                error=f"stored without bodies, headers, properties and usage: {reason}"[:1000],
            )
            try:
                await self.store.write_batch([bare])
                log.error("exchange %s stored without its bodies: %s", row.id, reason)
            except RowRejected:
                refused += 1
                log.error("exchange %s was refused by the store and dropped: %s", row.id, reason)
        return refused

    async def close(self) -> None:
        """The store is the app's; it closes it."""


class Recorder:
    """Handlers `submit` exchanges without waiting; `run` commits them in batches.

    A failed commit is retried with backoff and the batch stays at the head of the queue.
    When the queue is full the exchange is still served, and the drop is counted and logged.
    Reads call `caught_up` to see every exchange queued before them: `submitted` counts the
    exchanges queued so far and `settled` those written (or given up), in queue order.
    """

    def __init__(
        self,
        store: Store,
        to_row: Callable[[Exchange], Row],
        *,
        queue_size: int,
        batch_size: int,
        retry_max_s: float,
        drain_timeout_s: float,
        observe: Callable[[Exchange], None] | None = None,
        writer: BatchWriter | None = None,
    ) -> None:
        self.store = store
        self.observe = observe
        self.to_row = to_row
        self.writer: BatchWriter = StoreWriter(store, to_row) if writer is None else writer
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.retry_max_s = retry_max_s
        self.drain_timeout_s = drain_timeout_s
        self._queue: deque[Exchange] = deque()
        # Counts by id and by session, as plain dicts (collections.Counter's missing-key and
        # delete paths are Python code, on every call).
        self._in_flight: dict[str, int] = {}
        self._queued: dict[str, int] = {}
        self._sessions: dict[str, int] = {}
        self._serving: dict[str, Exchange] = {}
        self._wakeup = asyncio.Event()
        # Set by a waiting read so the writer commits at once instead of lingering for more rows.
        self._hurry = asyncio.Event()
        self._progress = asyncio.Event()
        self.submitted = 0
        self.settled = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_drop_warning = 0.0
        self.dropped = 0
        self.written = 0
        self.failed_commits = 0
        self.failing = False  # the last commit failed: nothing is being written right now
        self.lost_on_shutdown = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def backlogged(self) -> bool:
        """The queue is nearly full: the writer is behind and new exchanges may soon be dropped."""
        return len(self._queue) >= self.queue_size * BACKLOG_SHARE

    @property
    def serving(self) -> int:
        """Exchanges being served right now."""
        return sum(self._in_flight.values())

    @property
    def idle(self) -> bool:
        """Nothing is being served and nothing waits to be written."""
        return not self._queue and not self._in_flight

    def begin(self, exchange: Exchange) -> None:
        """Mark an exchange as being served, so feedback for it (or its session) is accepted."""
        in_flight, key = self._in_flight, exchange.id
        in_flight[key] = in_flight.get(key, 0) + 1
        self._serving[key] = exchange
        options = exchange.helicone
        if options is not None and options.session_id is not None:
            sessions, session = self._sessions, options.session_id
            sessions[session] = sessions.get(session, 0) + 1

    def _forget_session(self, exchange: Exchange) -> None:
        options = exchange.helicone
        if options is not None and options.session_id is not None:
            _count_down(self._sessions, options.session_id)

    def submit(self, exchange: Exchange) -> bool:
        """Queue a finished exchange; never blocks. False when it had to be dropped."""
        if self.observe is not None:
            self.observe(exchange)
        key = exchange.id
        if not _count_down(self._in_flight, key):
            self._serving.pop(key, None)
        if len(self._queue) >= self.queue_size:
            self._forget_session(exchange)
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_warning >= DROP_WARN_EVERY_S:
                self._last_drop_warning = now
                log.warning(
                    "log queue full (%d rows waiting): dropped %d exchanges so far",
                    len(self._queue),
                    self.dropped,
                )
            return False
        self._queue.append(exchange)
        queued = self._queued
        queued[key] = queued.get(key, 0) + 1
        self.submitted += 1
        self._wakeup.set()
        return True

    def serving_exchange(self, request_id: str) -> Exchange | None:
        """The exchange with this id being served right now (the latest, if several), or None."""
        return self._serving.get(request_id)

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until every exchange queued before this call is written; False after `timeout_s`.

        An exchange the store refused for good counts as settled, so a read never waits on it.
        """
        target = self.submitted
        if self.settled >= target:
            return True
        self._hurry.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.settled < target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def _settle(self, count: int) -> None:
        self.settled += count
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def is_pending(self, request_id: str) -> bool:
        """True while the exchange is being served or waits in the queue."""
        return request_id in self._in_flight or request_id in self._queued

    def is_session_pending(self, session_id: str) -> bool:
        """True while an exchange of this session is being served or waits in the queue."""
        return session_id in self._sessions

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="relaylog-recorder")

    async def stop(self) -> None:
        """Drain the queue (bounded by drain_timeout_s), then stop the writer."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.writer.close()

    async def run(self) -> None:
        backoff = RETRY_START_S
        deadline: float | None = None
        prepared: Any = None
        taken = 0  # exchanges at the head of the queue that `prepared` stands for
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._stopping and deadline is None:
                deadline = time.monotonic() + self.drain_timeout_s
            if prepared is None:
                if len(self._queue) < self.batch_size and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), LINGER_S)
                self._hurry.clear()
                batch = list(islice(self._queue, self.batch_size))
                taken = len(batch)
                prepared = self.writer.prepare(batch)
            try:
                refused = await self.writer.commit(prepared)
            except Exception as exc:
                self.failed_commits += 1
                self.failing = True
                log.warning(
                    "log write of %d rows failed (%s); retrying in %.2fs", taken, exc, backoff
                )
                if deadline is not None and time.monotonic() >= deadline:
                    self.lost_on_shutdown = len(self._queue)
                    log.error(
                        "shutdown: store failing for %.0fs; %d queued exchanges not written",
                        self.drain_timeout_s,
                        self.lost_on_shutdown,
                    )
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            backoff = RETRY_START_S
            self.failing = False
            for _ in range(taken):
                done = self._queue.popleft()
                _count_down(self._queued, done.id)
                self._forget_session(done)
            # Rows the store refused outright were counted as dropped, not written.
            self.dropped += refused
            self.written += taken - refused
            self._settle(taken)
            prepared = None
