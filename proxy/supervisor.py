"""`serve --workers N`: fork the workers, restart one that dies, stop on a crash loop, and pass
SIGTERM/SIGINT on so every worker drains."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NoReturn

from proxy.config import Settings
from proxy.errors import ConfigError, ServeError
from proxy.server import check_listen, migrate, run, serve

log = logging.getLogger("relaylog.supervisor")

# The first restart of a worker waits this long; each death soon after doubles it.
RESTART_DELAY_S = 0.25
MAX_RESTART_DELAY_S = 8.0
# A worker that dies this many times within CRASH_WINDOW_S is crashing in a loop: stop.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How often the supervisor looks for exits while a restart is waiting for its delay.
POLL_S = 0.05


@dataclass
class Slot:
    """One worker position: its process now, and when its earlier processes died."""

    index: int
    pid: int = 0
    ready: int = -1  # read end of the pipe the worker writes to once it listens
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


def _worker(settings: Settings, index: int, announce: bool, ready: int) -> NoReturn:
    """The child: serve until signalled, then exit with serve's status."""

    def listening() -> None:
        os.write(ready, b"r")
        os.close(ready)

    code = 0
    try:
        run(serve(settings, announce=announce, on_ready=listening))
    except (ServeError, ConfigError) as exc:
        print(f"relaylog: worker {index}: {exc}", file=sys.stderr)
        code = 1
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


class Supervisor:
    """Runs `server.workers` processes on one port (SO_REUSEPORT) and keeps them running.

    A worker that dies after it started listening (OOM killer, SIGKILL, a crash) is restarted
    after a delay that doubles while it keeps dying (logged each time); CRASH_LIMIT deaths within
    CRASH_WINDOW_S stop the whole service with an error. A worker that fails before it listens
    (port taken, store error) stops the others at once: a restart would fail the same way.
    SIGTERM/SIGINT go to every worker, each drains its own queue, and the exit status is the
    first non-zero one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots = [Slot(index) for index in range(settings.server.workers)]
        self.stopping = False
        self.result = 0
        self.error: str | None = None

    def _spawn(self, slot: Slot, announce: bool) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child has put the default handlers back (the supervisor's
        # relay must never run in a worker).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            os.close(read)
            for other in self.slots:
                if other.ready >= 0:
                    os.close(other.ready)
            _worker(self.settings, slot.index, announce, write)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(write)
        os.set_blocking(read, False)
        slot.pid, slot.ready, slot.restart_at = pid, read, None

    def _was_listening(self, slot: Slot) -> bool:
        try:
            listening = os.read(slot.ready, 1) == b"r"
        except BlockingIOError:
            listening = False
        os.close(slot.ready)
        slot.ready = -1
        return listening

    def _relay(self, signum: int, frame: object = None) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signum)

    def _stop(self, code: int, error: str | None = None) -> None:
        if not self.stopping and error is not None:
            self.error = error
        if self.result == 0:
            self.result = code
        self._relay(signal.SIGTERM)

    def _exited(self, slot: Slot, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        listening = self._was_listening(slot)
        pid, slot.pid = slot.pid, 0
        if self.stopping:
            if code != 0 and self.result == 0:
                self.result = code if code > 0 else 1
            return
        if not listening:
            self._stop(code if code > 0 else 1)
            return
        now = time.monotonic()
        slot.deaths.append(now)
        while slot.deaths and now - slot.deaths[0] > CRASH_WINDOW_S:
            slot.deaths.popleft()
        if len(slot.deaths) >= CRASH_LIMIT:
            log.error(
                "worker %d (pid %d) %s, %d deaths within %.0fs: stopping every worker",
                slot.index,
                pid,
                _describe(status),
                len(slot.deaths),
                CRASH_WINDOW_S,
            )
            self._stop(
                1,
                f"worker {slot.index} died {len(slot.deaths)} times within {CRASH_WINDOW_S:.0f}s "
                "(crashing in a loop); stopped",
            )
            return
        delay = min(RESTART_DELAY_S * 2 ** (len(slot.deaths) - 1), MAX_RESTART_DELAY_S)
        log.error(
            "worker %d (pid %d) %s; restarting it in %.2fs",
            slot.index,
            pid,
            _describe(status),
            delay,
        )
        slot.restart_at = now + delay

    def run(self) -> int:
        # Installed before the first fork; each worker puts the defaults back at once.
        signal.signal(signal.SIGTERM, self._relay)
        signal.signal(signal.SIGINT, self._relay)
        for slot in self.slots:
            self._spawn(slot, announce=slot.index == 0)
        pids = {slot.pid: slot for slot in self.slots}
        while any(slot.pid for slot in self.slots) or (
            not self.stopping and any(s.restart_at is not None for s in self.slots)
        ):
            waiting = not self.stopping and any(s.restart_at is not None for s in self.slots)
            pid, status = os.waitpid(-1, os.WNOHANG if waiting else 0) if pids else (0, 0)
            if pid:
                self._exited(pids.pop(pid), status)
                continue
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now and not self.stopping:
                    self._spawn(slot, announce=False)
                    pids[slot.pid] = slot
                    log.info("worker %d restarted (pid %d)", slot.index, slot.pid)
            time.sleep(POLL_S)
        if self.error is not None:
            raise ServeError(self.error)
        return self.result


def serve_workers(settings: Settings) -> int:
    """Run `server.workers` processes on the same port; migrations run once, before the fork."""
    check_listen(settings)
    if settings.server.port == 0:
        raise ServeError("--workers needs a fixed --port: every worker binds the same one")
    run(migrate(settings))
    return Supervisor(settings).run()
