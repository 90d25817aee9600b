"""Proxy and feedback-only keys (SHA-256 digests, constant-time checks); who may call what."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from proxy.config import HASH_PREFIX, AuthSettings
from proxy.errors import ApiError
from proxy.origin import foreign_origin, normal_host

# The dashboard keeps the proxy key its user typed in this cookie (HttpOnly, SameSite=Strict).
KEY_COOKIE = "relaylog_key"


def _digest(key: str) -> bytes:
    # A header that was not UTF-8 arrives with surrogate escapes: hash its raw bytes (it matches
    # no configured key) instead of failing.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _digests(keys: Iterable[str]) -> tuple[bytes, ...]:
    digests = []
    for key in keys:
        if key.startswith(HASH_PREFIX):
            digests.append(bytes.fromhex(key[len(HASH_PREFIX) :]))
        elif key:
            digests.append(_digest(key))
    return tuple(digests)


def _any_matches(candidate: bytes, digests: tuple[bytes, ...]) -> bool:
    """Compare against every digest so timing does not reveal which one matched."""
    found = False
    for digest in digests:
        found |= hmac.compare_digest(candidate, digest)
    return found


class KeyRing:
    """The configured keys. Plain keys are hashed on load; `sha256:<hex>` entries as given.

    `refused` are keys that are valid elsewhere but not here (the feedback-only keys, for the
    proxy keys' routes): such a key still gets 401, with an answer that says what it is for.
    """

    def __init__(self, keys: Iterable[str], refused: Iterable[str] = ()) -> None:
        self._digests = _digests(keys)
        self._refused = _digests(refused)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def matches(self, presented: str) -> bool:
        """Compare against every key so timing does not reveal which one matched."""
        return _any_matches(_digest(presented), self._digests)

    def require(self, header_value: str | None, header_name: str) -> None:
        """Raise 401 unless keys are off or `header_value` is `Bearer <a configured key>`."""
        if not self._digests:  # keys are off (the `enabled` test, without a property call)
            return
        if not header_value:
            raise ApiError(
                401, f"missing proxy key: send {header_name}: Bearer <key>", code="missing_key"
            )
        scheme, _, token = header_value.strip().partition(" ")
        if scheme.lower() == "bearer" and self.matches(token.strip()):
            return
        if scheme.lower() == "bearer" and _any_matches(_digest(token.strip()), self._refused):
            raise ApiError(
                401,
                "a feedback-only key (auth.feedback_keys) can only post feedback and scores: "
                f"send a proxy key in {header_name}",
                code="invalid_key",
            )
        raise ApiError(401, "invalid proxy key", code="invalid_key")


def presented_key(request: web.Request) -> str | None:
    """The `Authorization` header, or the dashboard's key cookie as `Bearer KEY`.

    The cookie counts only for the dashboard's own page: a read that is not from another
    origin, a write whose `Origin` is this server's (browsers send it on every write).
    """
    header = request.headers.get("Authorization")
    cookie = request.cookies.get(KEY_COOKIE)
    if header is not None or not cookie:
        return header
    host = normal_host(request.headers.get("Host", ""))
    if foreign_origin(request, host) is not None:
        return None
    if request.method not in ("GET", "HEAD") and "Origin" not in request.headers:
        return None
    return f"Bearer {cookie}"


def proxy_keyring(auth: AuthSettings) -> KeyRing:
    """The keys for every guarded route: forwarded calls, reads of the log, feedback."""
    return KeyRing(
        (key.get_secret_value() for key in auth.proxy_keys),
        refused=(key.get_secret_value() for key in auth.feedback_keys),
    )


def feedback_keyring(auth: AuthSettings) -> KeyRing:
    """The keys for posting feedback and scores: proxy keys plus the feedback-only keys."""
    return KeyRing(key.get_secret_value() for key in [*auth.proxy_keys, *auth.feedback_keys])


# Which keys a management route takes: none, the proxy keys, or those and the feedback keys.
KeyPolicy = Literal["open", "proxy", "feedback"]


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The management API's keys and CORS origins, built once by create_app."""

    proxy: KeyRing
    feedback: KeyRing
    origins: frozenset[str]

    def keyring(self, policy: KeyPolicy) -> KeyRing | None:
        """The keys a route with `policy` requires (None: no key needed)."""
        if policy == "open":
            return None
        return self.proxy if policy == "proxy" else self.feedback

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins
