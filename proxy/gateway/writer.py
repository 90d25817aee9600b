"""The log writer process: batches of exchanges in over a socket, one answer per commit.

Parsing the exchanges (`to_row`), the row upserts, the rollups and SQLite's own work cost the
event loop more than the proxying they log. `ProcessWriter` is the recorder's `BatchWriter`
that sends each batch, pickled once, to a child process (`python -m proxy.gateway.writer`)
that commits it through the same `StoreWriter` and answers with the count it had to drop. The
batch stays at the head of the recorder's queue until that answer arrives, so read-your-writes,
/readyz and the drain on SIGTERM mean what they meant with the writer on the loop. A child that
dies fails the commit in progress (the recorder retries it, the store upsert makes a repeat
harmless) and the next commit starts another. The child ignores SIGINT and SIGTERM and exits
when its socket closes: after the parent's drain, or when the parent itself is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import gc
import logging
import operator
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from proxy.gateway.exchange import Exchange, to_row
from proxy.gateway.headers import HeliconeOptions
from proxy.gateway.pricing import PriceTable
from proxy.gateway.recorder import StoreWriter
from storage import Store, open_store
from storage.errors import StoreError
from storage.sqlite import SQLiteStore

log = logging.getLogger("relaylog.writer")

FRAME = struct.Struct("!Q")
# Seconds a new writer process may take to open the store and say it is ready.
START_TIMEOUT_S = 60.0
# Seconds the writer process gets to finish and exit once its socket is closed.
EXIT_TIMEOUT_S = 10.0
# After a batch this large, the memory it took is handed back to the system (see _trimmer).
TRIM_AFTER_BYTES = 256 * 1024
# Allocations between young collections (Python's default is 700), as in serve.
YOUNG_GC_THRESHOLD = 20_000
# Model names whose price lookup the writer process keeps (see remembering_lookups).
PRICED_MODELS = 1024

EXCHANGE_FIELDS = tuple(f.name for f in dataclasses.fields(Exchange))
HELICONE_FIELDS = tuple(f.name for f in dataclasses.fields(HeliconeOptions))
HELICONE_AT = EXCHANGE_FIELDS.index("helicone")
AUTH_AT = HELICONE_FIELDS.index("auth")
_exchange_values = operator.attrgetter(*EXCHANGE_FIELDS)
_helicone_values = operator.attrgetter(*HELICONE_FIELDS)


def encode(exchange: Exchange) -> list[Any]:
    """The exchange as plain values (pickled in C, several times faster than the dataclass).

    The proxy key a call carried in Helicone-Auth never leaves this process.
    """
    values = list(_exchange_values(exchange))
    options = exchange.helicone
    if options is not None:
        helicone = list(_helicone_values(options))
        helicone[AUTH_AT] = None
        values[HELICONE_AT] = helicone
    return values


def decode(values: list[Any]) -> Exchange:
    helicone = values[HELICONE_AT]
    if helicone is not None:
        values[HELICONE_AT] = HeliconeOptions(*helicone)
    return Exchange(*values)


def _frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    return await reader.readexactly(size)


class ProcessWriter:
    """The parent's side: starts the writer process, sends batches, waits for each commit."""

    def __init__(self, db: str, pricing_file: str = "", price_overrides: Sequence[str] = ()):
        if db == ":memory:" or not db:
            raise StoreError("a writer process cannot share an in-memory SQLite store")
        self.db = db
        self.pricing_file = pricing_file
        self.price_overrides = list(price_overrides)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running writer process's id, or None."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start a writer process and wait until it has opened the store."""
        ours, theirs = socket.socketpair()
        try:
            argv = [sys.executable, "-m", "proxy.gateway.writer", "--fd", str(theirs.fileno())]
            argv += ["--db", self.db, "--pricing-file", self.pricing_file]
            for override in self.price_overrides:
                argv += ["--price", override]
            self._process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.starts += 1
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        try:
            ready = await asyncio.wait_for(_read_frame(self._reader), START_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            await self._stop()
            raise StoreError("the log writer process did not start; see its error above") from exc
        error = orjson.loads(ready)
        if error is not None:
            await self._stop()
            raise StoreError(f"the log writer process could not open the store: {error}")

    def prepare(self, batch: list[Exchange]) -> bytes:
        return pickle.dumps([encode(ex) for ex in batch], protocol=pickle.HIGHEST_PROTOCOL)

    async def commit(self, prepared: bytes) -> int:
        if self._writer is None or self._process is None or self._process.returncode is not None:
            await self._stop()
            await self.start()
        assert self._reader is not None and self._writer is not None
        try:
            self._writer.write(_frame(prepared))
            await self._writer.drain()
            refused, error = orjson.loads(await _read_frame(self._reader))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            code = await self._stop()
            log.error("the log writer process exited (%s); starting another", _exit(code))
            raise StoreError(f"log writer process exited ({_exit(code)})") from exc
        if error is not None:
            raise StoreError(error)
        return int(refused)

    async def _stop(self) -> int | None:
        """Close the socket and wait for the process to exit (killed after EXIT_TIMEOUT_S)."""
        writer, process = self._writer, self._process
        self._reader = self._writer = self._process = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)
        except TimeoutError:
            log.error("the log writer process did not exit; killing it")
            process.kill()
            return await process.wait()

    async def close(self) -> None:
        """Let the writer process finish and exit (after the recorder's drain)."""
        await self._stop()


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _trimmer() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none.

    A batch of 500 streamed exchanges takes ~10 MB while it is parsed and written; glibc keeps
    what was freed for the next one, so the writer's RSS rose by that much after its first
    large batch and stayed there. Trimming gives it back in ~0.2 ms, off the commit's path.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return functools.partial(trim, 0)


def remembering_lookups(table: PriceTable) -> PriceTable:
    """`table`, its lookup of each model name kept (PRICED_MODELS names at most).

    The writer process prices the same few models over and over, and its price table never
    changes: a kept lookup skips the name's normalising and the dated-snapshot match, ~0.8 us of
    the ~1.8 us that pricing a row took.
    """
    table.lookup = functools.lru_cache(maxsize=PRICED_MODELS)(table.lookup)  # type: ignore[method-assign]
    return table


def _store(db: str) -> Store:
    if db.startswith(("postgresql://", "postgres://")):
        return open_store(db)
    # This process does nothing but write: statements run inline, no thread hop each.
    return SQLiteStore(db, threaded=False)


async def serve(fd: int, db: str, price: PriceTable) -> None:
    """Commit each batch that arrives on socket `fd` and answer (refused, error); end at EOF."""
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    store = _store(db)
    try:
        await store.open()
    except Exception as exc:
        writer.write(_frame(orjson.dumps(str(exc))))
        await writer.drain()
        return
    batches = StoreWriter(store, functools.partial(to_row, price=price))
    trim = _trimmer()
    # As serve does (proxy/server.py): modules and the store stay until exit, and a batch's
    # objects are freed by their reference counts; ~2 us less per row in batches of 500.
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        writer.write(_frame(orjson.dumps(None)))
        await writer.drain()
        while True:
            try:
                payload = await _read_frame(reader)
            except asyncio.IncompleteReadError:
                return
            # Only this process's parent holds the other end of the socket.
            batch = [decode(values) for values in pickle.loads(payload)]  # noqa: S301
            try:
                answer: tuple[int, str | None] = (await batches.commit(batch), None)
            except Exception as exc:
                answer = (0, str(exc) or type(exc).__name__)
            writer.write(_frame(orjson.dumps(answer)))
            await writer.drain()
            if trim is not None and len(payload) >= TRIM_AFTER_BYTES:
                del batch, payload
                trim()
    except ConnectionError:
        return  # the parent is gone; what was committed stays committed
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and SIGTERM reach the whole process group: the parent drains through this
    # process and then closes its socket, which is what ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pricing-file", default="")
    parser.add_argument("--price", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format=f"relaylog writer {os.getpid()}: %(levelname)s %(message)s"
    )
    price = remembering_lookups(PriceTable.load(args.pricing_file, args.price))
    asyncio.run(serve(args.fd, args.db, price))
    return 0


if __name__ == "__main__":
    sys.exit(main())
