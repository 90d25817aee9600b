"""Helicone header parsing and header policy: pure functions, no sockets."""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from proxy.errors import HeaderError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "helicone-auth",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "openai-api-key",
        "cookie",
        "set-cookie",
        "proxy-authorization",
    }
)
# Request headers stored with their value (an allowlist): what says which client, SDK and
# account sent a call and how, and the Helicone headers relaylog acts on. Any other header is
# stored by name with its value replaced by REDACTED (a gateway's key may ride in any header:
# Ocp-Apim-Subscription-Key, X-Auth-Token, cf-aig-authorization, x-portkey-api-key...);
# CREDENTIAL_HEADERS are not stored at all.
STORED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "idempotency-key",
        "openai-beta",
        "openai-organization",
        "openai-project",
        "openai-version",
        "origin",
        "traceparent",
        "tracestate",
        "user-agent",
        "x-client-request-id",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-request-id",
        "helicone-cache-bucket-max-size",
        "helicone-cache-enabled",
        "helicone-cache-ignore-keys",
        "helicone-cache-seed",
        "helicone-fallbacks",
        "helicone-omit-request",
        "helicone-omit-response",
        "helicone-ratelimit-policy",
        "helicone-request-id",
        "helicone-retry-enabled",
        "helicone-retry-factor",
        "helicone-retry-max-timeout",
        "helicone-retry-min-timeout",
        "helicone-retry-num",
        "helicone-session-id",
        "helicone-session-name",
        "helicone-session-path",
        "helicone-stream-usage",
        "helicone-target-url",
        "helicone-user-id",
    }
)
# Header families stored with their value: the OpenAI SDKs' x-stainless-* (language, package
# version, OS, retry count...), custom properties, and the browser's fetch metadata.
STORED_PREFIXES = ("x-stainless-", "helicone-property-", "sec-fetch-")
REDACTED = "[redacted]"
# Query parameter names that carry a credential (Azure's api-key, Google's key, OAuth tokens,
# signed URLs' sig/signature), compared lowercased with '-' as '_'; names ending in one of
# CREDENTIAL_SUFFIXES count too. Their values are REDACTED in the stored query and access log.
CREDENTIAL_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "client_secret",
        "code",
        "credential",
        "id_token",
        "key",
        "passwd",
        "password",
        "pwd",
        "refresh_token",
        "secret",
        "session",
        "sig",
        "signature",
        "subscription_key",
        "token",
        "x_amz_credential",
    }
)
CREDENTIAL_SUFFIXES = ("_key", "_token", "_secret", "_signature", "_password", "_sig")
# Headers the proxy recomputes itself when forwarding a request upstream. The body has been
# read whole (no 100-continue to wait for) and decoded (aiohttp undoes Content-Encoding).
RECOMPUTED_REQUEST = frozenset(
    {"host", "content-length", "accept-encoding", "expect", "content-encoding"}
)
# Headers the proxy recomputes itself when answering the client.
RECOMPUTED_RESPONSE = frozenset({"content-length", "content-encoding", "date", "server"})
NOT_PASSED_ON = HOP_BY_HOP | RECOMPUTED_RESPONSE

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_PROPERTIES = 64
MAX_PROPERTY_BYTES = 1024
MAX_FIELD_CHARS = 1024
PROPERTY_PREFIX = "helicone-property-"
# Ends a value stored shortened; the stored value, marker included, stays within the limit.
TRUNCATED = "...[truncated]"
WARNING_HEADER = "Relaylog-Warning"
MAX_WARNING_HEADER_CHARS = 2048
OMIT_FLAGS = frozenset({"helicone-omit-request", "helicone-omit-response"})


@dataclass(slots=True)
class HeliconeOptions:
    """What the client asked for through `Helicone-*` headers."""

    request_id: str
    properties: dict[str, str] = field(default_factory=dict)
    user_id: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    omit_request: bool = False
    omit_response: bool = False
    stream_usage: bool = False
    auth: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RequestHeaders:
    """A request's headers read in one pass: what is logged, what goes upstream, Helicone's."""

    logged: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    # The first value of each `Helicone-*` header, by lowercased name.
    helicone: dict[str, str] = field(default_factory=dict)
    # `Helicone-Property-*` headers as (name, value), in the order they came.
    properties: list[tuple[str, str]] = field(default_factory=list)
    has_authorization: bool = False


# How scan_headers treats a header, by its name as sent: (lowercased name, how it is logged,
# where it goes). Names are classified once and remembered, up to NAME_MEMO of them (a client
# sending ever new names gets them classified each time instead of growing the table).
LOG_NOTHING, LOG_VALUE, LOG_REDACTED = 0, 1, 2
TO_NOWHERE, TO_UPSTREAM, TO_HELICONE, TO_PROPERTIES, TO_CONNECTION, TO_UPSTREAM_AUTH = range(6)
NAME_MEMO = 4096
NOT_UPSTREAM = HOP_BY_HOP | RECOMPUTED_REQUEST
_names: dict[str, tuple[str, int, int]] = {}


def _classify(name: str) -> tuple[str, int, int]:
    lowered = name.lower()
    if lowered in STORED_HEADERS or lowered.startswith(STORED_PREFIXES):
        logged = LOG_VALUE
    elif lowered not in CREDENTIAL_HEADERS:
        logged = LOG_REDACTED
    else:
        logged = LOG_NOTHING
    if lowered.startswith("helicone-"):
        goes = TO_PROPERTIES if lowered.startswith(PROPERTY_PREFIX) else TO_HELICONE
    elif lowered == "connection":
        goes = TO_CONNECTION
    elif lowered in NOT_UPSTREAM:
        goes = TO_NOWHERE
    else:
        goes = TO_UPSTREAM_AUTH if lowered == "authorization" else TO_UPSTREAM
    entry = (lowered, logged, goes)
    if len(_names) < NAME_MEMO:
        _names[name] = entry
    return entry


@functools.lru_cache(maxsize=64)
def _tokens(value: str) -> frozenset[str]:
    """The lowercased tokens of one comma-separated header value (cached: a client's
    `Connection:` value is the same on every call)."""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def scan_headers(headers: Mapping[str, str]) -> RequestHeaders:
    """Sort every request header once: each name is lowercased and classified a single time.

    Logged: names lowercased; credentials removed; values kept for STORED_HEADERS and
    STORED_PREFIXES, REDACTED for any other header. Upstream: hop-by-hop, recomputed,
    `Helicone-*` headers and those named in `Connection:` removed.
    """
    out = RequestHeaders()
    logged, upstream, helicone = out.logged, out.upstream, out.helicone
    names = _names
    connection: list[str] = []
    for name, value in headers.items():
        entry = names.get(name)
        lowered, logs, goes = _classify(name) if entry is None else entry
        if logs == LOG_VALUE:
            logged[lowered] = value
        elif logs == LOG_REDACTED:
            logged[lowered] = REDACTED
        if goes == TO_UPSTREAM:
            upstream[name] = value
        elif goes == TO_HELICONE:
            if lowered not in helicone:
                helicone[lowered] = value
        elif goes == TO_UPSTREAM_AUTH:
            upstream[name] = value
            out.has_authorization = True
        elif goes == TO_PROPERTIES:
            out.properties.append((name, value))
        elif goes == TO_CONNECTION:
            connection.append(value)
    if connection:
        # Most clients send `Connection: keep-alive`, naming nothing that would go upstream.
        named = frozenset().union(*map(_tokens, connection)) - NOT_UPSTREAM
        if named:
            for name in [n for n in upstream if n.lower() in named]:
                del upstream[name]
            out.has_authorization = any(n.lower() == "authorization" for n in upstream)
    return out


def is_valid_request_id(value: str) -> bool:
    """True when `value` may be used verbatim as a request id."""
    return REQUEST_ID_RE.fullmatch(value) is not None


def new_request_id() -> str:
    """A time-ordered UUID (version 7: 48 bits of Unix milliseconds, then 74 random bits).

    Ids drawn one after another sort together, so each insert into the id-keyed indexes of
    the store lands on the same few pages instead of a random one (a version-4 id cost SQLite
    two to three times the CPU per logged row).
    """
    h = f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def truncate_utf8(value: str, limit: int) -> str:
    """`value` cut to at most `limit` UTF-8 bytes, ending in the TRUNCATED marker."""
    room = limit - len(TRUNCATED)
    return value.encode("utf-8")[:room].decode("utf-8", "ignore") + TRUNCATED


def warning_header(warnings: list[str]) -> str:
    """The warnings as one `Relaylog-Warning` value: ASCII, bounded."""
    printable = "".join(c if c >= " " else "?" for c in "; ".join(warnings))
    text = printable.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > MAX_WARNING_HEADER_CHARS:
        text = text[: MAX_WARNING_HEADER_CHARS - len(TRUNCATED)] + TRUNCATED
    return text


class _Reader:
    """Reads Helicone headers; a problem is a warning (or, when strict, a HeaderError)."""

    def __init__(self, headers: Mapping[str, str], strict: bool) -> None:
        self.headers = headers
        self.strict = strict
        self.warnings: list[str] = []

    def problem(self, message: str, param: str, repair: str) -> None:
        """Refuse the header when strict; else note the problem and how it was repaired."""
        if self.strict:
            raise HeaderError(message, param)
        self.warnings.append(f"{message}; {repair}")

    def utf8(self, name: str, value: str) -> str:
        """The value, with bytes that are not UTF-8 replaced by U+FFFD (a warning)."""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.problem(f"{name} is not valid UTF-8", name, "invalid bytes replaced")
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return value

    def flag(self, name: str) -> bool:
        raw = self.headers.get(name)
        if raw is None:
            return False
        value = raw.strip().lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no", ""):
            return False
        # An unclear omit flag errs on the side of not storing the body.
        meant = name in OMIT_FLAGS
        self.problem(
            f"{name} must be 'true' or 'false', got {raw[:40]!a}",
            name,
            f"taken as {'true' if meant else 'false'}",
        )
        return meant

    def text(self, name: str) -> str | None:
        raw = self.headers.get(name)
        if raw is None:
            return None
        value = self.utf8(name, raw.strip())
        if len(value) > MAX_FIELD_CHARS:
            self.problem(
                f"{name} is longer than {MAX_FIELD_CHARS} characters", name, "stored truncated"
            )
            value = value[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
        return value or None

    def request_id(self) -> str:
        raw = self.headers.get("helicone-request-id")
        if raw is None:
            return new_request_id()
        value = raw.strip()
        if is_valid_request_id(value):
            return value
        request_id = new_request_id()
        self.problem(
            "Helicone-Request-Id must be 1-128 characters from [A-Za-z0-9._:@-] "
            f"starting with a letter or digit, got {value[:64]!a}",
            "Helicone-Request-Id",
            f"logged as {request_id}",
        )
        return request_id

    def properties(self, headers: list[tuple[str, str]]) -> dict[str, str]:
        """`Helicone-Property-*` headers, given as (name, value) in the order they came."""
        properties: dict[str, str] = {}
        dropped = 0
        for name, value in headers:
            key = self.utf8(name, name.lower()[len(PROPERTY_PREFIX) :])
            if not key:
                self.problem("Helicone-Property- needs a name after the prefix", name, "ignored")
                continue
            if key not in properties and len(properties) >= MAX_PROPERTIES:
                dropped += 1
                continue
            value = self.utf8(name, value)
            if len(value.encode("utf-8")) > MAX_PROPERTY_BYTES:
                self.problem(
                    f"{name} is larger than {MAX_PROPERTY_BYTES} bytes", name, "stored truncated"
                )
                value = truncate_utf8(value, MAX_PROPERTY_BYTES)
            properties[key] = value
        if dropped:
            self.problem(
                f"at most {MAX_PROPERTIES} Helicone-Property-* headers",
                "Helicone-Property-",
                f"{dropped} more ignored",
            )
        return properties


def _flag(headers: Mapping[str, str], name: str) -> bool:
    """A gateway feature's flag header; a bad value is a HeaderError (gateway headers are not
    logging metadata, so they are never repaired)."""
    return _Reader(headers, strict=True).flag(name)


def _text(headers: Mapping[str, str], name: str) -> str | None:
    """A gateway feature's text header, at most MAX_FIELD_CHARS; else a HeaderError."""
    return _Reader(headers, strict=True).text(name)


def helicone_options(scanned: RequestHeaders, strict: bool = False) -> HeliconeOptions:
    """Read every `Helicone-*` header the proxy honours.

    A malformed or over-long logging header never stops the call: it is repaired (a new id,
    a truncated value, an ignored property) and described in `warnings`. With `strict`, the
    first problem raises HeaderError instead.
    """
    found = scanned.helicone
    if not found and not scanned.properties:
        return HeliconeOptions(request_id=new_request_id())  # most calls: nothing to read
    reader = _Reader(found, strict)
    request_id = reader.request_id()
    properties = reader.properties(scanned.properties)
    session_path = reader.text("helicone-session-path")
    if session_path is not None and not session_path.startswith("/"):
        session_path = "/" + session_path
    return HeliconeOptions(
        request_id=request_id,
        properties=properties,
        user_id=reader.text("helicone-user-id"),
        session_id=reader.text("helicone-session-id"),
        session_path=session_path,
        session_name=reader.text("helicone-session-name"),
        omit_request=reader.flag("helicone-omit-request"),
        omit_response=reader.flag("helicone-omit-response"),
        stream_usage=reader.flag("helicone-stream-usage"),
        auth=found.get("helicone-auth"),
        warnings=reader.warnings,
    )


def parse_helicone(headers: Mapping[str, str], strict: bool = False) -> HeliconeOptions:
    """helicone_options() of `headers`, which must be case-insensitive (aiohttp's are)."""
    return helicone_options(scan_headers(headers), strict)


def with_upstream_key(scanned: RequestHeaders, upstream_key: str | None) -> dict[str, str]:
    """The headers to send upstream: the scanned ones, the key added if the client sent none."""
    out = dict(scanned.upstream)
    if upstream_key and not scanned.has_authorization:
        out["Authorization"] = f"Bearer {upstream_key}"
    # relaylog logs decoded bodies; ask the upstream for them uncompressed.
    out["Accept-Encoding"] = "identity"
    return out


def upstream_request_headers(
    headers: Mapping[str, str], upstream_key: str | None
) -> dict[str, str]:
    """The headers to send upstream: hop-by-hop and `Helicone-*` removed, key added if absent."""
    return with_upstream_key(scan_headers(headers), upstream_key)


def connection_named(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names listed in `Connection:`, hop-by-hop for this connection only (RFC 9110)."""
    return _listed([v for k, v in headers.items() if k.lower() == "connection"])


def _listed(values: list[str]) -> frozenset[str]:
    """The lowercased tokens of comma-separated header values."""
    return frozenset().union(*map(_tokens, values))


# Upstream response header names: dropped, passed on, or `Connection` (its value names more
# to drop), remembered like _names.
DROPPED, PASSED_ON, CONNECTION = 0, 1, 2
_response_names: dict[str, int] = {}


def _response_kind(name: str) -> int:
    lower = name.lower()
    kind = CONNECTION if lower == "connection" else DROPPED if lower in NOT_PASSED_ON else PASSED_ON
    if len(_response_names) < NAME_MEMO:
        _response_names[name] = kind
    return kind


def client_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream response headers to pass to the client (hop-by-hop removed)."""
    kept: dict[str, str] = {}
    connection: list[str] = []
    names = _response_names
    for name, value in headers.items():
        kind = names.get(name)
        if kind is None:
            kind = _response_kind(name)
        if kind == PASSED_ON:
            kept[name] = value
        elif kind == CONNECTION:
            connection.append(value)
    if connection:
        # `Connection: keep-alive` (most upstreams) names nothing still kept.
        named = _listed(connection) - NOT_PASSED_ON
        if named:
            kept = {name: value for name, value in kept.items() if name.lower() not in named}
    return kept


def loggable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers as stored: credentials removed, other values outside the allowlist
    REDACTED, names lowercased."""
    return scan_headers(headers).logged


def is_credential_param(name: str) -> bool:
    """A query parameter name that carries a credential (api-key, access_token, sig...)."""
    key = name.lower().replace("-", "_")
    return key in CREDENTIAL_PARAMS or key.endswith(CREDENTIAL_SUFFIXES)


def redact_query(raw: str) -> str:
    """A raw query string with the values of credential parameters replaced by REDACTED;
    everything else is kept byte for byte."""
    if not raw:
        return raw
    parts = raw.split("&")
    changed = False
    for n, part in enumerate(parts):
        name, sep, _ = part.partition("=")
        if sep and is_credential_param(unquote_plus(name)):
            parts[n] = f"{name}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else raw
