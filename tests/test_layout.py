"""The layout's import rules, read from the source: dependencies point proxy -> storage, and
nothing but `python -m proxy` imports the CLI."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> Iterator[str]:
    """Every module name an absolute import in `path` names (`from a import b` names a and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def sources(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_nothing_but_the_entry_point_imports_the_cli() -> None:
    cli, entry = ROOT / "proxy" / "cli", ROOT / "proxy" / "__main__.py"
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("proxy", "storage", "bench")
        if path != entry and cli not in path.parents
        for name in imported(path)
        if within(name, "proxy.cli")
    }
    assert offenders == set()


def test_storage_never_imports_proxy() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("storage")
        for name in imported(path)
        if within(name, "proxy")
    }
    assert offenders == set()


def test_the_rules_see_imports() -> None:
    modules = set(imported(ROOT / "proxy" / "__main__.py"))
    assert "proxy.cli" in modules and "proxy.cli.main" in modules
