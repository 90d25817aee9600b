"""relaylog as an operator runs it: `python -m proxy serve` in a subprocess, logs kept in files."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

LISTEN = re.compile(rb"listening on (http://\S+)")
_runs = itertools.count()


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    stdout: Path
    stderr: Path

    def logs(self) -> bytes:
        """Everything the process printed so far, stdout and stderr."""
        return self.stdout.read_bytes() + self.stderr.read_bytes()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), 60)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}


async def start_serve(
    workdir: Path,
    db: Path,
    *args: str,
    env: dict[str, str] | None = None,
    verbose: bool = False,
) -> Served:
    """Start `relaylog serve` on a free port; returns once it printed its listen line."""
    run = next(_runs)
    stdout, stderr = workdir / f"serve-{run}.out", workdir / f"serve-{run}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            *(["-v"] if verbose else []),
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            *args,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env={**clean_env(), **(env or {})},
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        match = LISTEN.search(stdout.read_bytes())
        if match:
            return Served(process, match.group(1).decode(), stdout, stderr)
        if process.returncode is not None or loop.time() > deadline:
            if process.returncode is None:
                process.kill()
            await process.wait()
            raise AssertionError(f"serve did not start: {stderr.read_text()}")
        await asyncio.sleep(0.05)


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """`/metrics` as {'name{label="v",...}': value}, labels sorted by name."""
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def heap_bytes(pid: int) -> int:
    """Resident anonymous memory of a process (Linux /proc `RssAnon`): its heap, without the
    shared libraries and mapped files that VmRSS also counts."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon for pid {pid}")
