"""The response cache: Helicone-Cache-* policy, the cache key, lookup and storing of answers."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.config import CacheSettings
from proxy.errors import HeaderError
from proxy.gateway import sse
from proxy.gateway.exchange import Exchange
from proxy.gateway.headers import _flag, _text
from storage import Store
from storage.cache import CacheEntry
from storage.errors import StoreError

log = logging.getLogger("relaylog.cache")

ENABLED = "Helicone-Cache-Enabled"
BUCKET = "Helicone-Cache-Bucket-Max-Size"
SEED = "Helicone-Cache-Seed"
IGNORE_KEYS = "Helicone-Cache-Ignore-Keys"
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
MAX_TTL_S = 365 * 86400
MAX_BUCKET = 20
MAX_IGNORED_KEYS = 64
# Body keys that change how an answer is delivered, not what it says.
DELIVERY_KEYS = frozenset({"stream", "stream_options"})
# Expiry and the size budget are enforced after a write at most this often per process.
SWEEP_EVERY_S = 1.0
CREDENTIAL_KEYS = ("authorization", "api-key", "x-api-key", "x-goog-api-key", "helicone-auth")


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one call uses the cache."""

    ttl_s: int
    bucket_max: int
    seed: str
    ignore_keys: frozenset[str]


def _max_age(headers: Mapping[str, str], default: int) -> int:
    raw = headers.get("cache-control")
    if raw is None:
        return default
    match = MAX_AGE.search(raw)
    if match is None:
        return default
    ttl = int(match.group(1))
    if ttl > MAX_TTL_S:
        raise HeaderError(
            f"Cache-Control max-age may be at most {MAX_TTL_S} seconds (365 days)",
            "Cache-Control",
        )
    return ttl


def parse_cache(headers: Mapping[str, str], defaults: CacheSettings) -> CachePolicy | None:
    """The call's cache policy, None when it is not cached; HeaderError on bad values."""
    if ENABLED in headers:
        if not _flag(headers, ENABLED):
            return None
    elif not defaults.enabled:
        return None
    bucket = defaults.bucket_max_size
    raw_bucket = headers.get(BUCKET)
    if raw_bucket is not None:
        text = raw_bucket.strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_BUCKET:
            raise HeaderError(f"{BUCKET} must be a whole number from 1 to {MAX_BUCKET}", BUCKET)
        bucket = int(text)
    seed = _text(headers, SEED)
    ignored = _text(headers, IGNORE_KEYS) or ""
    keys = frozenset(k.strip() for k in ignored.split(",") if k.strip())
    if len(keys) > MAX_IGNORED_KEYS:
        raise HeaderError(f"{IGNORE_KEYS} names more than {MAX_IGNORED_KEYS} keys", IGNORE_KEYS)
    return CachePolicy(
        ttl_s=_max_age(headers, defaults.ttl_s),
        bucket_max=bucket,
        seed=defaults.seed if seed is None else seed,
        ignore_keys=keys,
    )


def credential_digest(headers: Mapping[str, str]) -> str:
    """A digest of the caller's credentials: keys never share answers, none is kept in clear."""
    material = "\n".join(f"{name}={headers.get(name, '')}" for name in CREDENTIAL_KEYS)
    return hashlib.sha256(material.encode()).hexdigest()


def cache_key(
    *,
    method: str,
    path: str,
    query: str,
    upstream: str,
    body: bytes | None,
    policy: CachePolicy,
    credential: str,
) -> str | None:
    """The key of a call: canonical JSON body plus where it goes and who asks; None if the
    body is not a JSON object (such calls are not cached)."""
    canonical = b""
    if body:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        kept = {
            k: v
            for k, v in parsed.items()
            if k not in DELIVERY_KEYS and k not in policy.ignore_keys
        }
        canonical = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    head = orjson.dumps([method, path, query, upstream, policy.seed, credential])
    return hashlib.sha256(head + b"\n" + canonical).hexdigest()


def _json_object(body: bytes | None) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def wants(body: bytes | None) -> tuple[bool, bool]:
    """Whether the call asks for a stream, and for the stream's usage chunk."""
    parsed = _json_object(body)
    options = parsed.get("stream_options")
    usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return parsed.get("stream") is True, usage


def is_complete(ex: Exchange) -> bool:
    """True for an answer worth storing: a 2xx that arrived whole."""
    if ex.status is None or not 200 <= ex.status < 300 or ex.outcome != "ok":
        return False
    if ex.response_cut:
        return False
    if ex.is_stream:
        return sse.assemble(b"".join(ex.response_chunks)).done
    return True


@dataclass(slots=True)
class Lookup:
    """What the cache holds for a key: the entry to serve, or the bucket a miss fills."""

    hit: CacheEntry | None
    bucket: int


class ResponseCache:
    """Reads and writes entries through the store; a failing store means a miss, never an error."""

    def __init__(self, store: Store, settings: CacheSettings) -> None:
        self.store = store
        self.max_bytes = settings.max_bytes
        self.max_entry_bytes = settings.max_entry_bytes
        self.clock = time.time
        self._swept_at = 0.0

    async def lookup(self, key: str, policy: CachePolicy) -> Lookup:
        try:
            entries = await self.store.cache_get(key, self.clock())
        except StoreError as exc:
            log.warning("cache lookup failed, answering from upstream: %s", exc)
            return Lookup(None, 0)
        held = [e for e in entries if e.bucket < policy.bucket_max]
        if len(held) >= policy.bucket_max:
            return Lookup(random.choice(held), 0)
        used = {e.bucket for e in held}
        return Lookup(None, next(i for i in range(policy.bucket_max) if i not in used))

    async def keep(self, ex: Exchange, key: str, policy: CachePolicy, bucket: int) -> bool:
        """Store a complete answer; False when it is not stored (partial, too big, store down)."""
        if policy.ttl_s <= 0 or not is_complete(ex):
            return False
        raw = b"".join(ex.response_chunks)
        if len(raw) > self.max_entry_bytes:
            return False
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        now = self.clock()
        request = _json_object(ex.request_body)
        model = request.get("model")
        entry = CacheEntry(
            key=key,
            bucket=bucket,
            status=ex.status or 200,
            content_type=ex.response_content_type,
            is_stream=ex.is_stream,
            body=body,
            source_request_id=ex.id,
            model=model if isinstance(model, str) else None,
            path=ex.path,
            seed=policy.seed,
            created_at=now,
            expires_at=now + policy.ttl_s,
        )
        try:
            await self.store.cache_put(entry)
            if now - self._swept_at >= SWEEP_EVERY_S:
                self._swept_at = now
                await self.store.cache_sweep(self.max_bytes, now)
        except StoreError as exc:
            log.warning("cache write failed; the answer was served but not cached: %s", exc)
            return False
        return True
