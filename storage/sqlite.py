"""The SQLite store: WAL, busy_timeout, synchronous=NORMAL, one writer connection.

The writer runs on aiosqlite's thread and the reader on a thread of its own, so the event loop
never waits on the file; a process that does nothing but write (the log writer process) opens
the store with `threaded=False` and runs each statement inline, sparing it a thread hop per
statement. A read is stopped (sqlite3_interrupt) at its deadline (storage.base.read_deadline)
or when its caller stops waiting, so it never holds the reader for the reads queued behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from storage.base import READ_DEADLINE
from storage.errors import NoStore, QueryTimeout, RowRejected, StoreError
from storage.migrations import SQLITE
from storage.sql import SCHEMA_PROBE, SqlStore, Tx

log = logging.getLogger("relaylog.store")

BUSY_TIMEOUT_MS = 5000
# Every connection's settings: wait for a busy file, and sync at checkpoints only (WAL).
PRAGMAS = (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA synchronous = NORMAL")
# An inline reader (no thread to interrupt it from) checks a deadline every this many VM steps.
PROGRESS_STEPS = 10_000
# Errors about the data written rather than the database's state (a busy or locked file).
REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    ValueError,
    TypeError,
    OverflowError,
)


class _InlineCursor:
    """A finished statement's cursor, awaited or entered as aiosqlite's results are."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.description = cursor.description

    def __await__(self) -> Generator[Any, None, _InlineCursor]:
        return self
        yield  # a generator that returns at once: awaiting it never suspends

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()


class _Inline:
    """The part of aiosqlite.Connection the store uses, run on the calling thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def row_factory(self) -> Any:
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._conn.row_factory = factory

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _InlineCursor:
        return _InlineCursor(self._conn.execute(sql, params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def close(self) -> None:
        self._conn.close()


Connection = aiosqlite.Connection | _Inline


class _SqliteTx:
    """A transaction on the writer connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(sql, tuple(params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.conn.execute(sql, tuple(params)) as cursor:
            return [dict(r) for r in await cursor.fetchall()]


@dataclass(slots=True)
class _Read:
    """One statement for the reader, and whether it was stopped (deadline, caller gone)."""

    sql: str
    params: tuple[Any, ...]
    deadline: float | None
    stopped: bool = False

    def overdue(self) -> bool:
        return self.stopped or (self.deadline is not None and time.monotonic() >= self.deadline)


Result = tuple[list[str], list[Any]]


def _open_reader(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


class _Reader:
    """The read connection: one statement at a time, each stoppable.

    Threaded, statements run on the reader's own thread and are stopped from the event loop with
    sqlite3_interrupt, which costs a statement nothing while it runs (a progress handler would
    take the GIL every few thousand VM steps and wait on a busy loop each time). The lock makes
    the interrupt land only on the statement it is meant for: it is called only while that
    statement is the one running, and one queued is stopped before it starts. Inline (no thread
    to interrupt from), a deadline read runs with a progress handler instead.
    """

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor | None) -> None:
        self._conn = conn
        self._thread = thread
        self._lock = threading.Lock()
        self._running: _Read | None = None

    @classmethod
    async def open(cls, path: str, *, threaded: bool) -> _Reader:
        if not threaded:
            return cls(_open_reader(path), None)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaylog-reader")
        opening = asyncio.get_running_loop().run_in_executor(thread, _open_reader, path)
        try:
            conn = await asyncio.shield(opening)
        except asyncio.CancelledError:  # a cancelled open still closes what it opened
            with contextlib.suppress(Exception):
                (await opening).close()
            thread.shutdown(wait=False)
            raise
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread)

    @property
    def busy(self) -> bool:
        """Whether a statement is running on the reader now."""
        return self._running is not None

    async def close(self) -> None:
        with self._lock:  # a read still running would hold up the close
            if self._running is not None:
                self._running.stopped = True
                self._conn.interrupt()
        if self._thread is None:
            self._conn.close()
            return
        await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown(wait=False)

    async def fetch(self, read: _Read) -> Result:
        if self._thread is None:
            return self._run_inline(read)
        loop = asyncio.get_running_loop()
        timer = None
        if read.deadline is not None:
            timer = loop.call_later(max(0.0, read.deadline - time.monotonic()), self._stop, read)
        try:
            return await loop.run_in_executor(self._thread, self._run, read)
        except asyncio.CancelledError:
            self._stop(read)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _stop(self, read: _Read) -> None:
        """Stop `read`: interrupted if it is running, never started if it is queued."""
        with self._lock:
            read.stopped = True
            if self._running is read:
                self._conn.interrupt()

    def _run(self, read: _Read) -> Result:
        with self._lock:
            if read.overdue():
                raise QueryTimeout
            self._running = read
        try:
            return self._execute(read)
        finally:
            with self._lock:
                self._running = None

    def _run_inline(self, read: _Read) -> Result:
        if read.deadline is None:
            return self._execute(read)
        if read.overdue():
            raise QueryTimeout
        self._conn.set_progress_handler(read.overdue, PROGRESS_STEPS)
        try:
            return self._execute(read)
        finally:
            self._conn.set_progress_handler(None, 0)

    def _execute(self, read: _Read) -> Result:
        cursor = self._conn.execute(read.sql, read.params)
        try:
            rows = cursor.fetchall()
            return [column[0] for column in cursor.description or ()], rows
        finally:
            cursor.close()


class SQLiteStore(SqlStore):
    """SQLite behind the Store interface. Writes go through one connection, reads another."""

    dialect = SQLITE

    def __init__(self, path: str, *, threaded: bool = True) -> None:
        self.path = path
        self.description = f"sqlite:{path}"
        self.threaded = threaded
        self._write: Connection | None = None
        self._read: _Reader | None = None
        # Transactions on the writer connection must not interleave.
        self._write_lock = asyncio.Lock()
        # (device, inode) of the file opened: a file deleted or replaced under us is noticed.
        self._identity: tuple[int, int] | None = None

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _replaced(self) -> bool:
        return self._identity is not None and self._file_identity() != self._identity

    async def ping(self) -> None:
        if self._replaced():
            raise StoreError(f"{self.path} was deleted or replaced while open")
        await super().ping()

    async def _reopen_if_replaced(self) -> None:
        """Writing to a deleted file loses every row: open the path again, loudly."""
        if not self._replaced():
            return
        log.error("%s was deleted or replaced while open; opening it again", self.path)
        await self.close()
        await self.open()

    async def _connect(self) -> Connection:
        conn = await self._open_threaded() if self.threaded else _Inline(self._open_inline())
        try:
            conn.row_factory = sqlite3.Row
            for pragma in PRAGMAS:
                await conn.execute(pragma)
        except BaseException:  # its thread would otherwise outlive a cancelled open
            await conn.close()
            raise
        return conn

    def _open_inline(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    async def _open_threaded(self) -> aiosqlite.Connection:
        # A cancelled open (a signal while serve starts) must still close what it opened: the
        # connection's thread would otherwise outlive the event loop.
        opening = asyncio.ensure_future(aiosqlite.connect(self.path, isolation_level=None))
        try:
            conn = await asyncio.shield(opening)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await opening).close()
            raise
        return conn

    async def open(self, *, create: bool = True) -> list[str]:
        parent = Path(self.path).parent
        if self.path != ":memory:" and not parent.is_dir():
            raise StoreError(f"directory {parent} does not exist")
        if not create and (self.path == ":memory:" or self._file_identity() is None):
            raise NoStore(f"no relaylog store at {self.path}")
        try:
            self._write = await self._connect()
            if not create:
                await self._require_schema(self._write)
            await self._write.execute("PRAGMA journal_mode = WAL")
            applied = await self.migrate()
            self._read = await _Reader.open(self.path, threaded=self.threaded)
            if self.path != ":memory:":
                self._identity = self._file_identity()
        except NoStore:
            await self.close()
            raise
        except (sqlite3.Error, StoreError) as exc:
            await self.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        return applied

    async def _require_schema(self, conn: Connection) -> None:
        """A file that is not a relaylog store (empty, or another application's database) is
        left exactly as it was: checked before WAL mode or any migration touches it."""
        async with conn.execute(SCHEMA_PROBE["sqlite"]) as cursor:
            found = await cursor.fetchone()
        if found is None:
            raise NoStore(f"{self.path} is not a relaylog store (no relaylog tables in it)")

    async def close(self) -> None:
        self._identity = None
        reader, self._read = self._read, None  # a read arriving meanwhile finds the store closed
        if reader is not None:
            await reader.close()
        if self._write is not None:
            await self._write.close()
        self._write = None

    @property
    def writer(self) -> Connection:
        if self._write is None:
            raise StoreError("store is not open")
        return self._write

    @property
    def reader(self) -> _Reader:
        if self._read is None:
            raise StoreError("store is not open")
        return self._read

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One IMMEDIATE transaction on the writer connection; sqlite errors become StoreError."""
        await self._reopen_if_replaced()
        conn = self.writer
        try:
            async with self._write_lock:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(conn)
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
        except REFUSED as exc:
            raise RowRejected(f"write refused: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        read = _Read(sql, tuple(params), READ_DEADLINE.get())
        try:
            names, rows = await self.reader.fetch(read)
        except sqlite3.OperationalError as exc:
            if read.deadline is not None and exc.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT:
                raise QueryTimeout from exc
            raise StoreError(f"query failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        # Zipping with the column names is several times faster than dict(sqlite3.Row).
        return [dict(zip(names, row, strict=True)) for row in rows]
