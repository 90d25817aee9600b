"""The route table: handlers match their bodies, and every path answers 405 to other methods."""

from __future__ import annotations

import inspect
import typing

import pytest

from proxy.api import ROUTES
from proxy.api.http import Route
from tests.helpers import Client, Upstream


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_a_handler_takes_the_body_its_route_reads(route: Route) -> None:
    hints = typing.get_type_hints(route.handler)
    parameters = list(inspect.signature(route.handler).parameters)
    if route.body is None:
        assert parameters == ["request"]
    else:
        assert len(parameters) == 2 and hints[parameters[1]] is route.body


def test_routes_are_unique() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    assert len({r.name for r in ROUTES}) == len(ROUTES)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/healthz", "GET"),
        ("DELETE", "/v1/request/query", "POST"),
        ("PUT", "/v1/request/x-1/feedback", "POST, OPTIONS"),
        ("PATCH", "/v1/helicone-dataset/d/delete", "POST"),
    ],
)
async def test_other_methods_get_405_naming_the_allowed_ones(
    proxy: Client, method: str, path: str, allow: str
) -> None:
    response = await proxy.request(method, path, headers={"Content-Type": "application/json"})
    assert response.status == 405
    assert response.headers["Allow"] == allow
    assert (await response.json())["error"].endswith(f"use {allow}")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/request/x-1/scores"),
        ("POST", "/v1/helicone-dataset/d-1/request/r-1"),
        ("GET", "/v1/request"),
        ("DELETE", "/v1/session/s-1"),
        ("POST", "/v1/feedback/batches"),
        ("GET", "/v1/helicone-dataset/d-1/rows"),
    ],
)
async def test_unknown_management_paths_are_404_and_never_forwarded(
    proxy: Client, upstream: Upstream, method: str, path: str
) -> None:
    response = await proxy.request(
        method, path, json={"rating": True}, headers={"Authorization": "Bearer sk-caller"}
    )
    assert response.status == 404
    body = await response.json()
    assert body["data"] is None and path in body["error"]
    assert upstream.received == []
    assert "helicone-id" not in response.headers


async def test_paths_that_only_share_a_prefix_are_still_forwarded(
    proxy: Client, upstream: Upstream
) -> None:
    response = await proxy.get("/v1/requests-log")
    assert response.status == 404
    assert [r.path for r in upstream.received] == ["/v1/requests-log"]
