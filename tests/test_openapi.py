"""The management API's OpenAPI document, and schemathesis run against relaylog serving it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings

from proxy.api import ROUTES
from proxy.api.models import NO_NUL
from proxy.api.openapi import PATH_PATTERN, REF, document
from proxy.app import create_app
from proxy.config import Settings
from proxy.dashboard.routes import PREFIX as DASHBOARD_PREFIX
from proxy.errors import FORWARD_ROUTE
from tests.helpers import IN_CI, LISTEN, clean_env

KNOWN_ID = "ticket-42-1700000000"
KNOWN_SESSION = "chat-7"
MISSING = "schemathesis is not installed: pip install -e '.[test]'"
# aiohttp's limit on the request line; ids of 1024 four-byte characters exceed it once encoded.
MAX_REQUEST_LINE = 8190 - len("POST  HTTP/1.1")


async def test_openapi_json_is_served(proxy: Any) -> None:
    response = await proxy.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc = orjson.loads(await response.read())
    assert doc == document()
    assert doc["openapi"].startswith("3.1")


def test_body_and_answer_schemas_are_their_models() -> None:
    """The document's schemas are generated, so they cannot drift from the validation."""
    doc = document()
    schemas = doc["components"]["schemas"]
    for route in ROUTES:
        operation = doc["paths"][PATH_PATTERN.sub(r"{\1}", route.path)][route.method.lower()]
        models = [m for m in (route.body, route.data) if isinstance(m, type)]
        for model in models:
            generated = model.model_json_schema(ref_template=REF)
            generated.pop("$defs", None)
            assert schemas[model.__name__] == generated
        if route.body is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": REF.format(model=route.body.__name__)}
        else:
            assert "requestBody" not in operation
    assert schemas["DatasetCreateBody"]["properties"]["datasetName"]["pattern"] == NO_NUL


def _aiohttp_path(canonical: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", canonical)


def test_every_management_route_is_documented() -> None:
    """A route added to the app without a line in the document fails here (the dashboard's
    HTML pages are not the management API)."""
    app = create_app(Settings())
    served = {
        (route.method.lower(), _aiohttp_path(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.name != FORWARD_ROUTE
        and not (route.resource.name or "").startswith(DASHBOARD_PREFIX)
        and route.method not in ("HEAD", "OPTIONS", "*")
    }
    documented = {
        (method, path) for path, operations in document()["paths"].items() for method in operations
    }
    assert served == documented


def _seed(url: str) -> None:
    """One logged exchange, so valid ids in the document's examples reach a 200."""
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=orjson.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "seed"}]}
        ),
        headers={
            "Content-Type": "application/json",
            "Helicone-Request-Id": KNOWN_ID,
            "Helicone-Session-Id": KNOWN_SESSION,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """relaylog serving on a real port; its log must hold no traceback when the fuzzing ends."""
    workdir = tmp_path_factory.mktemp("openapi")
    log = workdir / "serve.err"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "proxy", "serve", "--upstream", "sandbox"),
                *("--port", "0", "--db", str(workdir / "fuzz.db")),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=workdir,
            env={**clean_env(), "RELAYLOG_FEEDBACK_WAIT_MS": "0"},
        )
    assert process.stdout is not None
    match = LISTEN.search(process.stdout.readline())
    assert match, Path(log).read_text()
    url = match.group(1).decode()
    _seed(url)
    yield url
    process.terminate()
    assert process.wait(30) == 0
    process.stdout.close()
    text = log.read_text()
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]


if importlib.util.find_spec("schemathesis") is None:

    def test_schemathesis_is_installed() -> None:
        if IN_CI:
            pytest.fail(MISSING)
        pytest.skip(MISSING)

else:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_dict(document())

    def no_stack_trace(ctx: Any, response: Any, case: Any) -> bool | None:
        body = response.content or b""
        if b"Traceback" in body or b'File "' in body:
            raise AssertionError(f"stack trace in the answer: {body[:300]!r}")
        return None

    @pytest.mark.slow
    @schema.parametrize()
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def test_management_api_never_fails_on_generated_input(case: Any, live_url: str) -> None:
        response = case.call(base_url=live_url, timeout=10)
        if len(response.request.url) > MAX_REQUEST_LINE:
            # aiohttp's HTTP parser refuses it before relaylog sees it: a plain-text 400.
            assert response.status_code == 400
            no_stack_trace(None, response, case)
            return
        # Invalid input is generated too; it must get an honest 4xx, never a 500. Acceptance of
        # data the schema forbids is not checked: the query and dataset bodies are lenient on
        # purpose (pydantic's lax mode takes 0 for false; an empty body means {}).
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                no_stack_trace,
            ],
        )
