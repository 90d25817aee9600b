"""GET and DELETE /v1/cache: what the cache holds, and purging it over the management API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ProxyFactory, Upstream

CACHE = {"Helicone-Cache-Enabled": "true", "Authorization": "Bearer sk-a"}


async def _call(proxy: Any, text: str, **headers: str) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = await proxy.post("/v1/chat/completions", json=body, headers={**CACHE, **headers})
    await response.read()
    return str(response.headers["Helicone-Cache"])


async def test_stats_and_a_filtered_purge(proxy: Any, upstream: Upstream) -> None:
    await _call(proxy, "one")
    await _call(proxy, "two", **{"Helicone-Cache-Seed": "keep"})
    held = await (await proxy.get("/v1/cache")).json()
    assert held["data"]["entries"] == 2 and held["data"]["bytes"] > 0
    purged = await proxy.delete("/v1/cache", params={"seed": ""})
    assert purged.status == 200
    assert await purged.json() == {"data": {"deleted": 1}, "error": None}
    assert await _call(proxy, "one") == "MISS"
    assert await _call(proxy, "two", **{"Helicone-Cache-Seed": "keep"}) == "HIT"
    everything = await proxy.delete("/v1/cache")
    assert (await everything.json())["data"] == {"deleted": 2}
    assert len(upstream.received) == 3


@pytest.mark.parametrize(
    "params",
    [{"colour": "red"}, {"older_than_s": "soon"}, {"older_than_s": "-1"}, {"model": "m" * 2000}],
)
async def test_bad_filters_are_400_and_delete_nothing(
    proxy: Any, upstream: Upstream, params: dict[str, str]
) -> None:
    await _call(proxy, "kept")
    response = await proxy.delete("/v1/cache", params=params)
    assert response.status == 400
    assert (await response.json())["data"] is None
    assert (await (await proxy.get("/v1/cache")).json())["data"]["entries"] == 1


async def test_purge_needs_a_proxy_key_when_keys_are_set(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(auth={"proxy_keys": ["k-1"]})
    assert (await proxy.delete("/v1/cache")).status == 401
    ok = await proxy.delete("/v1/cache", headers={"Authorization": "Bearer k-1"})
    assert ok.status == 200
    wrong = await proxy.post("/v1/cache", json={}, headers={"Authorization": "Bearer k-1"})
    assert wrong.status == 405
