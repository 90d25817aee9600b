"""The listener's bounds: the open-file limit raised and checked, client connections capped with
refusals answered 503 and logged."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, cast

from aiohttp import web

log = logging.getLogger("relaylog.listener")

# Open files kept back from client connections: the store's files, the listening sockets, the
# event loop's own descriptors, logs and pipes.
RESERVED_FDS = 64
# Below this many client connections the operator is told the open-file limit is low.
LOW_CONNECTIONS = 1024
REFUSAL_WARN_EVERY_S = 10.0
_REFUSAL_BODY = (
    b'{"error": {"message": "relaylog is at its client connection limit; retry shortly", '
    b'"type": "server_error", "param": null, "code": "connection_limit"}}'
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft, hard


def client_connection_limit(open_files: int, configured: int) -> int:
    """How many client connections to accept: `configured`, or (when 0) what the open-file limit
    leaves after the reserve, halved because every call in flight also holds an upstream socket.
    Warns when the limit is low or `configured` exceeds what the open files allow."""
    room = max(1, (open_files - RESERVED_FDS) // 2)
    limit = configured or room
    if configured > room:
        log.warning(
            "server.max_client_connections is %d but the open-file limit (%d) leaves room for "
            "about %d: raise the limit (ulimit -n, systemd LimitNOFILE=) or lower the setting",
            configured,
            open_files,
            room,
        )
    elif not configured and limit < LOW_CONNECTIONS:
        log.warning(
            "the open-file limit is %d: relaylog accepts at most %d client connections; raise it "
            "(ulimit -n, systemd LimitNOFILE=) to serve more",
            open_files,
            limit,
        )
    return limit


class _Refused(asyncio.Protocol):
    """A connection beyond the limit: answered 503 and closed, never handed to aiohttp."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.WriteTransport).
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(REFUSAL)
        writer.close()


class BoundedSite(web.TCPSite):
    """A TCPSite that accepts at most `limit` client connections at a time; one more is answered
    503 and closed at once, and refusals are logged (at most every 10 s), so connections past
    the limit cannot take the open files that upstream calls and the store need."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: int, **kw: Any):
        super().__init__(runner, host, port, **kw)
        self.limit = limit
        self.refused = 0
        self._warned_at = 0.0
        self._warned_count = 0

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) < self.limit:
            return server()
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= REFUSAL_WARN_EVERY_S:
            log.warning(
                "refused %d client connections at the limit of %d open ones "
                "(server.max_client_connections or the open-file limit)",
                self.refused - self._warned_count,
                self.limit,
            )
            self._warned_at, self._warned_count = now, self.refused
        return _Refused()

    async def start(self) -> None:
        # TCPSite.start with the bounded protocol factory in place of the aiohttp server.
        await super(web.TCPSite, self).start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
