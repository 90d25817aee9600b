"""Settings (pydantic) and load_settings(): flag > RELAYLOG_* env > TOML file > default."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from proxy.errors import ConfigError
from proxy.gateway.pricing import parse_override, read_prices

ENV_PREFIX = "RELAYLOG_"
SANDBOX = "sandbox"
DEFAULT_CONFIG_FILE = "relaylog.toml"
HASH_PREFIX = "sha256:"
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8787, ge=0, le=65535, description="TCP port to listen on.")
    allow_unauthenticated: bool = Field(
        False, description="Allow a non-loopback host without proxy keys."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    access_log: bool = Field(False, description="Write an access-log line per request to stderr.")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="Longest time a client may take to send a request body (408)."
    )
    hostnames: list[str] = Field(
        default_factory=list,
        description="Host names (name or name:port) relaylog answers besides 127.0.0.1, "
        "localhost and [::1] on its port; '*' = any. Others get 421.",
    )
    strict_headers: bool = Field(
        False,
        description="Refuse a malformed or over-long Helicone logging header with a 400 "
        "instead of forwarding the call with a warning.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes serving the port together (SO_REUSEPORT), each with its own writer.",
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Close a client connection that sends no complete request head for this "
        "long after it opened or after its last answer (slow headers, idle keep-alive).",
    )
    max_client_connections: int = Field(
        0,
        ge=0,
        description="Client connections open at once per process; more are answered 503. "
        "0 = from the open-file limit: (RLIMIT_NOFILE - 64) / 2.",
    )


class UpstreamSettings(Section):
    url: str = Field(
        "https://api.openai.com/v1",
        description="Base URL /v1 calls are forwarded to, or 'sandbox' for the built-in fake.",
    )
    api_key: SecretStr = Field(
        SecretStr(""),
        description="Key added as Authorization when the client sends none (env or file only).",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Upstream connect timeout.")
    read_timeout_s: float = Field(
        600.0, gt=0, description="Longest silence from the upstream before 504 / timeout."
    )
    max_connections: int = Field(
        2048, ge=1, description="Pooled keep-alive connections to the upstream (open streams)."
    )
    target_allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (host or host:port) Helicone-Target-Url may name; empty = refused.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        if value != SANDBOX and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL or 'sandbox'")
        if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError("must not carry credentials; set upstream.api_key instead")
        return value


class StoreSettings(Section):
    db: str = Field(
        "./relaylog.db", description="SQLite file path, or a postgresql:// URL shared by replicas."
    )
    retention_days: float = Field(
        0, ge=0, description="Delete exchanges older than this many days (0 = keep forever)."
    )
    body_retention_days: float = Field(
        0,
        ge=0,
        description="Clear request and response bodies older than this many days, keeping the "
        "metadata (0 = keep them as long as the row).",
    )
    prune_interval_s: float = Field(
        3600, gt=0, description="How often serve applies the retention settings."
    )


class RecorderSettings(Section):
    queue_size: int = Field(
        50_000, ge=1, description="Exchanges waiting to be written before drops are counted."
    )
    batch_size: int = Field(500, ge=1, description="Most rows committed in one transaction.")
    retry_max_s: float = Field(
        2.0, gt=0, description="Longest pause between retries of a failed commit."
    )
    drain_timeout_s: float = Field(
        30.0, gt=0, description="On shutdown, how long to keep retrying queued rows."
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Most bytes of each request and response body stored; the client still "
        "gets everything, the row notes the cut.",
    )
    writer: Literal["auto", "process", "task"] = Field(
        "auto",
        description="Where rows are parsed and committed: a writer process of their own, off "
        "the event loop, or a task on it; auto = a process under `relaylog serve` (a task for "
        "an in-memory store or an app embedded with create_app).",
    )


class FeedbackSettings(Section):
    wait_ms: int = Field(
        2000, ge=0, description="How long feedback for an unknown id waits for its row."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to post feedback and scores ('*' = any); "
        "never to read the log or forward calls.",
    )


class PricingSettings(Section):
    file: str = Field(
        "",
        description="JSON price table merged over the built-in one: "
        '{"models": {"NAME": {"input": USD, "output": USD, "cached_input": USD}}} per 1M tokens.',
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="Per-model prices, USD per 1M tokens: MODEL=INPUT/OUTPUT[/CACHED_INPUT].",
    )

    @field_validator("file")
    @classmethod
    def _file_reads(cls, file: str) -> str:
        if file:
            read_prices(Path(file))
        return file

    @field_validator("overrides")
    @classmethod
    def _overrides_parse(cls, overrides: list[str]) -> list[str]:
        for text in overrides:
            parse_override(text)
        return overrides


class AuthSettings(Section):
    proxy_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys clients must send (Helicone-Auth: Bearer KEY); env or file only.",
    )
    feedback_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys valid only for posting feedback and scores (safe in a browser).",
    )

    @field_validator("proxy_keys", "feedback_keys")
    @classmethod
    def _hashes_are_sha256(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """A `sha256:` entry must be 64 hex digits; the message never repeats the key."""
        for index, key in enumerate(keys):
            text = key.get_secret_value()
            if text.startswith(HASH_PREFIX) and not SHA256_HEX.fullmatch(text[len(HASH_PREFIX) :]):
                raise ValueError(
                    f"entry {index} starts with {HASH_PREFIX} but is not 64 hex digits"
                )
        return keys

    @model_validator(mode="after")
    def _feedback_keys_need_proxy_keys(self) -> AuthSettings:
        if self.feedback_keys and not self.proxy_keys:
            raise ValueError(
                "feedback_keys only restrict access when proxy_keys are set; set proxy_keys too"
            )
        return self


class CacheSettings(Section):
    enabled: bool = Field(
        False, description="Cache every call without Helicone-Cache-Enabled (the header wins)."
    )
    ttl_s: int = Field(
        7 * 86400,
        ge=1,
        le=365 * 86400,
        description="Entry lifetime when the call sends no Cache-Control: max-age.",
    )
    bucket_max_size: int = Field(
        1,
        ge=1,
        le=20,
        description="Answers kept per key when Helicone-Cache-Bucket-Max-Size is absent.",
    )
    seed: str = Field("", description="Namespace when Helicone-Cache-Seed is absent.")
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Total size of stored entries; the oldest are evicted beyond it.",
    )
    max_entry_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest answer stored; bigger ones are not cached."
    )


class RetrySettings(Section):
    enabled: bool = Field(
        False, description="Retry every call without Helicone-Retry-Enabled (the header wins)."
    )
    num: int = Field(5, ge=0, le=20, description="Retries after the first attempt.")
    factor: float = Field(2.0, ge=1, le=10, description="Backoff growth per retry.")
    min_timeout_ms: int = Field(1000, ge=0, description="First backoff wait.")
    max_timeout_ms: int = Field(10000, ge=0, description="Longest backoff wait.")
    retry_after_cap_s: float = Field(
        60.0,
        ge=0,
        description="Longest upstream Retry-After honoured; a longer one gives up at once.",
    )


class RateLimitSettings(Section):
    policy: str = Field(
        "", description="Helicone-RateLimit-Policy applied when a call sends none ('' = none)."
    )
    redis_url: str = Field(
        "",
        description="redis:// URL for the counters (the redis extra); '' keeps them in the store.",
    )

    redis_prefix: str = Field(
        "relaylog:ratelimit:", description="Prefix of every Redis key relaylog writes."
    )

    @field_validator("policy")
    @classmethod
    def _policy_parses(cls, value: str) -> str:
        from proxy.errors import ApiError
        from proxy.gateway.ratelimit import parse_policy

        try:
            parse_policy(value)
        except ApiError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class FallbackSettings(Section):
    default: str = Field(
        "", description="Helicone-Fallbacks JSON used when a call sends none ('' = none)."
    )
    on_codes: list[int] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504],
        description="Statuses of the first upstream that move a call on to its fallbacks.",
    )

    @field_validator("default")
    @classmethod
    def _default_parses(cls, value: str) -> str:
        from proxy.errors import ApiError
        from proxy.gateway.fallbacks import parse_fallbacks

        try:
            parse_fallbacks(value, lambda url: url)
        except ApiError as exc:
            raise ValueError(exc.message) from None
        return value


class DashboardSettings(Section):
    enabled: bool = Field(True, description="Serve the web dashboard at / on the proxy's port.")
    query_timeout_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description=(
            "Longest a dashboard read may run: its statements are stopped then and the page "
            "asks to narrow the time range."
        ),
    )
    page_size: int = Field(50, ge=10, le=500, description="Rows per page of the requests list.")
    count_cap: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="The requests list counts matching rows up to this many, then shows 'N+'.",
    )
    tail_interval_s: float = Field(
        3.0, ge=1, le=300, description="How often the opt-in live tail asks for new rows."
    )
    cookie_secure: bool = Field(
        False,
        description="Mark the dashboard's key cookie Secure (set it when served over HTTPS, "
        "e.g. behind a TLS proxy); it is always HttpOnly and SameSite=Strict.",
    )


class Settings(Section):
    server: ServerSettings = Field(default_factory=ServerSettings, description="Listener.")
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings, description="Upstream.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Log store.")
    recorder: RecorderSettings = Field(
        default_factory=RecorderSettings, description="Queue and batching writer."
    )
    feedback: FeedbackSettings = Field(
        default_factory=FeedbackSettings, description="Feedback endpoints."
    )
    pricing: PricingSettings = Field(
        default_factory=PricingSettings, description="Model prices for cost_usd."
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="Proxy keys and feedback-only keys."
    )
    cache: CacheSettings = Field(
        default_factory=CacheSettings, description="Response cache (Helicone-Cache-*)."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Upstream retries (Helicone-Retry-*)."
    )
    ratelimit: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description="Rate limits (Helicone-RateLimit-Policy)."
    )
    fallbacks: FallbackSettings = Field(
        default_factory=FallbackSettings, description="Fallback upstreams (Helicone-Fallbacks)."
    )
    dashboard: DashboardSettings = Field(
        default_factory=DashboardSettings, description="The web dashboard at /."
    )

    @property
    def is_sandbox(self) -> bool:
        return self.upstream.url == SANDBOX


# CLI flags that map to settings; secrets have no flag on purpose.
FLAG_PATHS: dict[str, tuple[str, str]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "allow_unauthenticated": ("server", "allow_unauthenticated"),
    "workers": ("server", "workers"),
    "db": ("store", "db"),
    "upstream": ("upstream", "url"),
}


def env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section}_{name}".upper()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            raw = environ.get(env_name(section, name))
            if raw is None:
                continue
            value: Any = raw
            if field.annotation is not None and "list" in str(field.annotation):
                value = [item.strip() for item in raw.split(",") if item.strip()]
            out.setdefault(section, {})[name] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(
    config_file: str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, a TOML file, RELAYLOG_* variables and CLI flags."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path_text = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path_text:
        data = read_toml(Path(path_text))
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        data = read_toml(Path(DEFAULT_CONFIG_FILE))
    data = _merge(data, _env_overrides(env))
    for flag, value in (flags or {}).items():
        if value is None:
            continue
        section, name = FLAG_PATHS[flag]
        data = _merge(data, {section: {name: value}})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def _toml_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def example_toml() -> str:
    """config.example.toml as generated from the Settings model (a test keeps the file equal)."""
    defaults = Settings()
    lines = [
        "# relaylog settings: every key with its default.",
        "# Precedence: CLI flag > env RELAYLOG_<SECTION>_<KEY> > this file > default.",
    ]
    for section, info in Settings.model_fields.items():
        lines += ["", f"[{section}]  # {info.description}"]
        model = getattr(defaults, section)
        for name, field in type(model).model_fields.items():
            lines.append(f"# {field.description} (env {env_name(section, name)})")
            lines.append(f"{name} = {_toml_value(getattr(model, name))}")
    return "\n".join(lines) + "\n"
