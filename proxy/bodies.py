"""Reading a request body within a size bound (413) and a time bound (408)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.errors import ApiError


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than {limit} bytes", code="body_too_large")


async def read_bounded(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body; 413 as soon as it passes `limit`, 408 if it takes over `timeout_s`."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content.is_eof():
        # The whole body has arrived already: the common case needs no timer and no await.
        body = request.content.read_nowait()
        if len(body) > limit:
            raise _too_large(limit)
        return body
    try:
        async with asyncio.timeout(timeout_s):
            collected = bytearray()
            async for chunk in request.content.iter_any():
                collected += chunk
                if len(collected) > limit:
                    raise _too_large(limit)
            return bytes(collected)
    except TimeoutError as exc:
        raise ApiError(
            408, f"request body not received within {timeout_s:g} s", code="body_timeout"
        ) from exc
