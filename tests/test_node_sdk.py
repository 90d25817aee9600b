"""The official Node `openai` package (from npm) through relaylog, run from the Python suite."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import IN_CI, stored

pytestmark = pytest.mark.slow
JS_DIR = Path(__file__).parent / "js"


def node_ready() -> str | None:
    """Why the Node check cannot run, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS_DIR / "node_modules" / "openai").is_dir():
        return "run `npm ci --prefix tests/js` to install the openai package"
    return None


async def test_node_sdk_calls_are_logged_under_helicone_id(proxy: Any) -> None:
    missing = node_ready()
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(JS_DIR / "sdk_check.mjs"),
        str(proxy.make_url("/v1")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result = orjson.loads(out.splitlines()[-1])
    assert result["plain_text"] == "Echo: hello from node"
    assert result["stream_text"] == "Echo: stream from node"
    plain = await stored(proxy.app, result["plain_id"])
    assert plain["properties"] == {"sdk": "node"}
    assert plain["user_id"] == "js-user"
    streamed = await stored(proxy.app, result["stream_id"])
    assert streamed["is_stream"] is True
    assert streamed["response_body"]["choices"][0]["message"]["content"] == result["stream_text"]
