"""The README keeps up with the tree: its Layout table names every package and module under
proxy/ and storage/, and its contents list names every section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LAYOUT_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)
CONTENTS_ROW = re.compile(r"^- \[(.+)\]\(#([^)]+)\)$", re.MULTILINE)


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next `## ` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def headings(text: str) -> list[str]:
    """Every `## ` heading outside fenced code, in order."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            found.append(line[3:].strip())
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def layout_entries() -> dict[str, Path]:
    """What the Layout table must name: each package as `dir/` (for its __init__.py) and each
    other module by its path, under proxy/ and storage/."""
    entries: dict[str, Path] = {}
    for top in ("proxy", "storage"):
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            name = f"{relative.parent}/" if path.name == "__init__.py" else str(relative)
            entries[name] = path
    return entries


def first_docstring_line(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.splitlines()[0] if docstring else "(no docstring)"


def test_layout_names_every_package_and_module() -> None:
    listed = LAYOUT_ROW.findall(section(README.read_text(), "Layout"))
    entries = layout_entries()
    missing = [
        f"| `{name}` | {first_docstring_line(path)} |"
        for name, path in entries.items()
        if name not in listed
    ]
    assert not missing, "README.md's Layout table lacks these; add a row for each:\n" + "\n".join(
        missing
    )
    gone = [name for name in listed if name not in entries]
    assert not gone, f"README.md's Layout table names what does not exist; remove: {gone}"
    assert len(listed) == len(set(listed)), "a path is listed twice in README.md's Layout table"


def test_contents_list_every_section_in_order() -> None:
    text = README.read_text()
    contents = CONTENTS_ROW.findall(text[: text.index("\n## ")])
    sections = headings(text)
    assert [title for title, _ in contents] == sections, (
        "README.md's contents list must name every ## section, in order"
    )
    assert [anchor for _, anchor in contents] == [slug(title) for title in sections]


def test_slugs_follow_github() -> None:
    assert slug("Gateway: cache, retries, rate limits, fallbacks") == (
        "gateway-cache-retries-rate-limits-fallbacks"
    )
    assert slug("Pointing an SDK at relaylog") == "pointing-an-sdk-at-relaylog"
