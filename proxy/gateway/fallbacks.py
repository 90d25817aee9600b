"""Fallbacks: Helicone-Fallbacks parsed into the ordered upstream targets one call may use."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import HeaderError
from proxy.gateway.headers import HOP_BY_HOP, RECOMPUTED_REQUEST
from proxy.gateway.retry import Target

HEADER = "Helicone-Fallbacks"
MAX_FALLBACKS = 10
MAX_HEADERS = 32
MAX_MODEL_CHARS = 256
FIELDS = frozenset({"target-url", "headers", "onCodes", "bodyKeyOverride"})


def _bad(message: str) -> HeaderError:
    return HeaderError(f"{HEADER}: {message}", HEADER)


def _codes(value: Any, where: str) -> frozenset[int]:
    if not isinstance(value, list) or len(value) > 64:
        raise _bad(f"{where}.onCodes must be a list of statuses or {{from, to}} ranges")
    codes: set[int] = set()
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        elif (
            isinstance(item, dict)
            and set(item) == {"from", "to"}
            and all(isinstance(item[k], int) and 100 <= item[k] <= 599 for k in ("from", "to"))
            and item["from"] <= item["to"]
        ):
            codes.update(range(item["from"], item["to"] + 1))
        else:
            raise _bad(f"{where}.onCodes has {orjson.dumps(item).decode()[:40]}")
    return frozenset(codes)


def _headers(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise _bad(f"{where}.headers must be an object of at most {MAX_HEADERS} strings")
    out = {}
    for name, text in value.items():
        lowered = name.lower()
        if not isinstance(text, str) or not name or any(c in name + text for c in "\r\n"):
            raise _bad(f"{where}.headers[{name[:40]!r}] must be a one-line string")
        if (
            lowered in HOP_BY_HOP
            or lowered in RECOMPUTED_REQUEST
            or lowered.startswith("helicone-")
        ):
            raise _bad(f"{where}.headers may not set {name[:40]}")
        out[name] = text
    return out


@dataclass(frozen=True, slots=True)
class Fallback:
    """One parsed entry: where it goes (None: the first choice's upstream) and what changes."""

    target_url: str | None
    headers: dict[str, str]
    on_codes: frozenset[int] | None
    body_override: dict[str, Any]


def _entry(item: Any, n: int, resolve: Callable[[str], str]) -> Fallback:
    where = f"[{n}]"
    if isinstance(item, str):
        if not item.strip() or len(item) > MAX_MODEL_CHARS:
            raise _bad(f"{where} must be a model name of 1-{MAX_MODEL_CHARS} characters")
        return Fallback(None, {}, None, {"model": item.strip()})
    if not isinstance(item, dict):
        raise _bad(f"{where} must be a model name or an object")
    unknown = set(item) - FIELDS
    if unknown:
        raise _bad(f"{where} has unknown field {sorted(unknown)[0]!r}")
    url = item.get("target-url")
    if url is not None and not isinstance(url, str):
        raise _bad(f"{where}.target-url must be a string")
    override = item.get("bodyKeyOverride", {})
    if not isinstance(override, dict):
        raise _bad(f"{where}.bodyKeyOverride must be an object")
    return Fallback(
        target_url=None if url is None else resolve(url),
        headers=_headers(item.get("headers", {}), where),
        on_codes=None if "onCodes" not in item else _codes(item["onCodes"], where),
        body_override=override,
    )


def parse_fallbacks(raw: str | None, resolve: Callable[[str], str]) -> list[Fallback]:
    """Helicone's JSON list of targets, or a plain list of model names; [] when absent.

    `resolve` turns a target URL into the base to use, raising when it is not allowlisted,
    so a refused target fails the call before any connection is made.
    """
    if raw is None or not raw.strip():
        return []
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"not valid JSON ({exc})") from None
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_FALLBACKS:
        raise _bad(f"must be a JSON list of 1-{MAX_FALLBACKS} entries")
    return [_entry(item, n, resolve) for n, item in enumerate(data)]


def plan(first: Target, fallbacks: list[Fallback], first_codes: Collection[int]) -> list[Target]:
    """The ordered targets: the first choice (moving on at `first_codes`), then each fallback.

    A fallback without onCodes moves on at the same statuses as the first choice. One with a
    target URL never gets the configured upstream key.
    """
    targets = [
        Target(0, first.base, first.whole_path, first.upstream_key, on_codes=frozenset(first_codes))
    ]
    for n, fallback in enumerate(fallbacks, start=1):
        same = fallback.target_url is None
        targets.append(
            Target(
                index=n,
                base=first.base if same else fallback.target_url or "",
                whole_path=first.whole_path if same else True,
                upstream_key=first.upstream_key if same else None,
                headers=fallback.headers,
                body_override=fallback.body_override,
                on_codes=frozenset(first_codes) if fallback.on_codes is None else fallback.on_codes,
            )
        )
    return targets


def redacted(raw: str) -> str:
    """The header as stored in the log: every header value given for a target masked."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:1024]
    if not isinstance(data, list):
        return raw[:1024]
    masked = [
        {**item, "headers": {k: "***" for k in item["headers"]}}
        if isinstance(item, dict) and isinstance(item.get("headers"), dict)
        else item
        for item in data
    ]
    return orjson.dumps(masked).decode()


def with_override(body: bytes | None, override: Mapping[str, Any]) -> bytes | None:
    """The JSON body with `override`'s top-level keys set; unchanged when not a JSON object."""
    if not override or not body:
        return body
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict):
        return body
    return orjson.dumps({**parsed, **override})
