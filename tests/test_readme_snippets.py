"""The README's runnable examples, run as written against `relaylog serve --upstream sandbox`.

A fenced block preceded by `<!-- readme-test: run -->` is run: shell blocks with bash (`set -euo
pipefail`), Python blocks with this interpreter, JavaScript with node (the official `openai`
package from tests/js). All blocks share one working directory and one store (the default
`./relaylog.db` there), in README order, so a block may use what an earlier one logged. The
address `127.0.0.1:8787` / `localhost:8787` is replaced by the port the proxy got, and
`<helicone-id>` by the id of the newest logged request at the time the command runs.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import IN_CI, clean_env, start_serve
from tests.test_node_sdk import JS_DIR, node_ready
from tests.test_readme import README

pytestmark = pytest.mark.slow
MARKER = "<!-- readme-test: run -->"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ADDRESS = re.compile(r"(127\.0\.0\.1|localhost):8787")
# A stats answer that matched nothing: an example whose filter finds no rows is a trap.
EMPTY_STATS = re.compile(rb'"requests":\s*0\b')
# The newest logged id, waited for: the writer commits a moment after the answer is sent.
NEWEST_ID = """$(python - <<'PY'
import json, subprocess, sys, time
for _ in range(100):
    out = subprocess.run([sys.executable, "-m", "proxy", "requests", "--json", "--limit", "1"],
                         capture_output=True, text=True).stdout
    if out.strip():
        print(json.loads(out.splitlines()[0])["id"])
        break
    time.sleep(0.1)
PY
)"""


@dataclass(frozen=True)
class Snippet:
    line: int
    language: str
    code: str


def snippets(text: str) -> list[Snippet]:
    """Every block marked to run, with the README line it starts on."""
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n")
        if before.endswith(MARKER):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Snippet(line, match.group(1), match.group(2)))
    return found


def test_the_readme_marks_its_examples_to_run() -> None:
    marked = snippets(README.read_text())
    assert {s.language for s in marked} == {"bash", "python", "js"}
    assert len(marked) >= 8
    assert README.read_text().count(MARKER) == len(marked), "a marker not followed by a block"


def command_for(snippet: Snippet, workdir: Path, port: int) -> list[str]:
    code = ADDRESS.sub(f"127.0.0.1:{port}", snippet.code)
    if snippet.language == "bash":
        code = code.replace("<helicone-id>", NEWEST_ID)
        return ["bash", "-c", "set -euo pipefail\n" + code]
    if snippet.language == "python":
        return [sys.executable, "-c", code]
    script = workdir / f"snippet-{snippet.line}.mjs"
    script.write_text(code)
    return ["node", str(script)]


async def test_readme_examples_run_against_the_sandbox(tmp_path: Path) -> None:
    marked = snippets(README.read_text())
    missing = node_ready()
    if missing and IN_CI:
        pytest.fail(missing)
    if not missing:
        (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
    served = await start_serve(tmp_path, tmp_path / "relaylog.db", "--upstream", "sandbox")
    port = int(served.url.rsplit(":", 1)[1].rstrip("/"))
    # `relaylog` on PATH is this checkout's, as after `pip install .`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "relaylog"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m proxy "$@"\n')
    launcher.chmod(0o755)
    env = {
        **clean_env(),
        "OPENAI_API_KEY": "sandbox",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    ran = 0
    try:
        for snippet in marked:
            if snippet.language == "js" and missing:
                continue
            process = await asyncio.create_subprocess_exec(
                *command_for(snippet, tmp_path, port),
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 120)
            where = f"README.md line {snippet.line} ({snippet.language})"
            assert process.returncode == 0, f"{where} failed:\n{out.decode()}\n{err.decode()}"
            assert not EMPTY_STATS.search(out), f"{where} matched no requests:\n{out.decode()}"
            ran += 1
    finally:
        assert await served.stop() == 0, served.logs().decode()
    assert ran == len(marked) - (sum(s.language == "js" for s in marked) if missing else 0)
