"""The `relaylog` command. main() loads the commands inside its own Ctrl-C handling, so an
interrupt while Python is still importing them ends with exit 130 and no traceback."""

from __future__ import annotations

from collections.abc import Sequence

INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run `relaylog` with `argv` (default: sys.argv[1:]); the exit code."""
    try:
        from proxy.cli.command import run
    except KeyboardInterrupt:
        return INTERRUPTED
    return run(argv)
