"""Browser-test helpers (a pytest plugin, loaded by tests/conftest.py): relaylog served on the
sandbox with seeded traffic, Debian's headless Chromium through Playwright, and screenshots
saved into docs/screenshots/ for the README.

Fixtures: `served` (relaylog for a test module, open), `keyed` (the same with proxy keys),
`browser`, `page` (a fresh context at 1280 x 800, light); `screenshot(page, name)` saves
NAME-light.png and NAME-dark.png. Playwright never downloads a browser: it drives
/usr/bin/chromium.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright

from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000
START_TIMEOUT_S = 30
KEY = "sk-browser-test-key"
FEEDBACK_KEY = "fb-browser-test-key"
LISTEN = re.compile(r"listening on (http://\S+)")
# Prompts that would run script if any view put them in the page as markup.
HOSTILE = ("<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>")


@dataclass
class Relaylog:
    """`relaylog serve --upstream sandbox` in a subprocess, and its JSON API."""

    url: str
    process: subprocess.Popen[bytes]
    key: str | None = None
    ids: list[str] = field(default_factory=list)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
            headers["Helicone-Auth"] = f"Bearer {self.key}"
        return headers

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, str], Any]:
        """The answer's headers and JSON body; fails the test on an error status."""
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self._headers(headers)
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(response.headers), orjson.loads(response.read() or b"null")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The `data` of a management API answer."""
        return self.call(method, path, body)[1]["data"]

    def chat(
        self,
        text: str,
        model: str = "gpt-4o-mini",
        user: str | None = None,
        session: tuple[str, str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> str:
        """One chat completion through relaylog; `session` is (id, path, name)."""
        headers = {f"Helicone-Property-{k}": v for k, v in (properties or {}).items()}
        if user is not None:
            headers["Helicone-User-Id"] = user
        if session is not None:
            for part, value in zip(("Id", "Path", "Name"), session, strict=True):
                headers[f"Helicone-Session-{part}"] = value
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": text},
            ],
        }
        answer_headers, _ = self.call("POST", "/v1/chat/completions", body, headers)
        request_id = answer_headers["helicone-id"]
        self.ids.append(request_id)
        return request_id

    def query_ids(self, tree: Any) -> list[str]:
        """The ids POST /v1/request/query gives for a filter tree, newest first."""
        rows = self.api("POST", "/v1/request/query", {"filter": tree, "limit": 1000})
        return [row["request_id"] for row in rows]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_relaylog(workdir: Path, env: dict[str, str] | None = None) -> Relaylog:
    """Serve on a free loopback port in front of the sandbox; returns once it listens."""
    with (workdir / "serve.out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--upstream", "sandbox", "--port", "0",
             "--db", str(workdir / "relaylog.db")],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
            env={**clean_env(), "RELAYLOG_DASHBOARD_TAIL_INTERVAL_S": "1", **(env or {})},
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = LISTEN.search((workdir / "serve.out").read_text())
        if match:
            return Relaylog(match.group(1), process)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"relaylog did not start: {(workdir / 'serve.out').read_text()}")


def seed(relaylog: Relaylog) -> None:
    """Twelve chats over two models, two prompt versions, three users, one session; feedback
    and accuracy scores on most, and the two hostile prompts (rated down)."""
    for n in range(10):
        onboarding = n < 4
        request_id = relaylog.chat(
            f"question {n}: what is {n} + {n}?",
            model="gpt-4o" if n % 3 == 0 else "gpt-4o-mini",
            user=("alice", "bob", "carol")[n % 3],
            session=("onboarding", f"/step{n}", "Onboarding") if onboarding else None,
            properties={"prompt-version": f"v{1 + n % 2}"},
        )
        if n % 4 != 3:
            rating = n % 4 != 2
            relaylog.api("POST", f"/v1/request/{request_id}/feedback", {"rating": rating})
        scores = {"scores": {"accuracy": 50 + n * 5}}
        relaylog.api("POST", f"/v1/request/{request_id}/score", scores)
    for text in HOSTILE:
        request_id = relaylog.chat(text, user="mallory")
        relaylog.api("POST", f"/v1/request/{request_id}/feedback", {"rating": False})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relaylog]:
    """relaylog without keys, seeded, for one test module."""
    relaylog = start_relaylog(tmp_path_factory.mktemp("served"))
    try:
        seed(relaylog)
        yield relaylog
    finally:
        relaylog.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relaylog]:
    """relaylog with a proxy key and a feedback-only key, seeded."""
    env = {"RELAYLOG_AUTH_PROXY_KEYS": KEY, "RELAYLOG_AUTH_FEEDBACK_KEYS": FEEDBACK_KEY}
    relaylog = start_relaylog(tmp_path_factory.mktemp("keyed"), env)
    relaylog.key = KEY
    try:
        seed(relaylog)
        yield relaylog
    finally:
        relaylog.stop()


# Module scope: sync Playwright holds an event loop while it runs, which the asyncio tests of
# the next modules must not find running.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context (no cookies, no storage) at 1280 x 800 in the light scheme.

    The test fails if a page broke the Content-Security-Policy (an inline script or style) or
    threw a script error.
    """
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert problems == [], problems


def screenshot(page: Page, name: str) -> list[Path]:
    """Save the page as docs/screenshots/NAME-light.png and NAME-dark.png (the scheme is
    emulated, as prefers-color-scheme; the theme toggle's choice is cleared for it)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    page.evaluate("() => { localStorage.removeItem('relaylog-theme'); "
                  "delete document.documentElement.dataset.theme; }")  # fmt: skip
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        path = SCREENSHOTS / f"{name}-{scheme}.png"
        page.screenshot(path=str(path))
        saved.append(path)
    page.emulate_media(color_scheme="light")
    return saved
