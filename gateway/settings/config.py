"""The config file's model: every section, validated and frozen, with each bad key's path.

`read_config` turns a YAML file into one `GatewayConfig`; it holds no secret (those come
from the environment, joined in `build.py`), so `gateway config check` reads it without
any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, model_validator

from gateway.settings.identity import IdentityConfig, identity_warnings
from gateway.settings.models import EditsConfig, ImagesConfig, SandboxConfig
from gateway.settings.redis import RedisConnectionConfig
from gateway.settings.tracing import TracingConfig
from gateway.settings.types import (
    HexDigest,
    Name,
    Price,
    Strict,
    TimeZoneName,
    error_message,
)
from gateway.vocabulary import SIZES, OnTimeout, Size, Unit, Window

SANDBOX = "sandbox"
DALL_E_2_PRICES: dict[Size, float] = {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.020}


class ConfigError(Exception):
    """The configuration is unusable; the message names the offending key's path."""


class EnvironmentProblem(ConfigError):
    """A variable of the environment (not the file) is unusable; the message is one line
    naming the variable, never its value."""


OPENAI_HOST = "api.openai.com"
# Image calls take minutes at high quality and large sizes (about four have been seen).
UPSTREAM_TIMEOUT_SECONDS = 300.0


class UpstreamConfig(Strict):
    base_url: str = "https://api.openai.com/v1"
    adapter: Literal["variations", "edits"] = "variations"
    api_key_env: str = "OPENAI_API_KEY"
    organization: str | None = None
    project: str | None = None
    timeout_seconds: float = Field(UPSTREAM_TIMEOUT_SECONDS, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    # The one client's pool: every request in flight may hold one upstream connection.
    max_connections: int = Field(4096, ge=1)
    models: tuple[str, ...] = Field(("dall-e-2",), min_length=1)
    edits: EditsConfig | None = None
    # How often the upstream's /models is read for the models' availability and shutdown
    # dates (and once at start-up); it never holds up a request.
    watch_seconds: float = Field(300.0, gt=0)
    sandbox: SandboxConfig = SandboxConfig()  # the sandbox's switches (base_url: sandbox)
    # A call sent upstream whose answer never came whole (a timeout, a lost connection, a
    # shutdown): the upstream may have made and billed the images. keep_charge (the safe
    # side) keeps the reservation; refund gives back its images and usd.
    on_timeout: OnTimeout = "keep_charge"

    @model_validator(mode="after")
    def _adapter_configured(self) -> UpstreamConfig:
        if self.adapter == "edits" and self.edits is None:
            raise ValueError("adapter: edits needs an edits section (models, prices)")
        return self

    @property
    def is_sandbox(self) -> bool:
        return self.base_url == SANDBOX

    @property
    def is_openai(self) -> bool:
        """Whether `base_url` is OpenAI's own API."""
        return urlsplit(self.base_url).hostname == OPENAI_HOST


class PrincipalConfig(Strict):
    user: Name
    team: Name
    role: Literal["user", "admin"] = "user"
    key_sha256: HexDigest


class QuotaRule(Strict):
    unit: Unit
    limit: float = Field(ge=0)
    window: Window


def _unique_rules(rules: tuple[QuotaRule, ...]) -> tuple[QuotaRule, ...]:
    seen = {(rule.unit, rule.window) for rule in rules}
    if len(seen) != len(rules):
        raise ValueError("two rules with the same unit and window")
    return rules


RuleList = tuple[QuotaRule, ...]


class QuotasConfig(Strict):
    # The IANA zone whose calendar the day, week and month windows and the books follow.
    timezone: TimeZoneName = "UTC"
    default: RuleList = ()
    users: dict[Name, RuleList] = Field(default_factory=dict)
    teams: dict[Name, RuleList] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_duplicate_rules(self) -> QuotasConfig:
        _unique_rules(self.default)
        for rules in (*self.users.values(), *self.teams.values()):
            _unique_rules(rules)
        return self


class CacheConfig(Strict):
    enabled: bool = True
    redis_url_env: str = "CACHE_REDIS_URL"
    redis: RedisConnectionConfig = RedisConnectionConfig()  # used with the cache's own URL
    scope: Literal["global", "team", "user"] = "global"
    ttl_seconds: int = Field(86400, ge=1)
    max_entry_bytes: int = Field(32 * 1024 * 1024, ge=1)
    hits_count_against: tuple[Unit, ...] = ("requests",)
    # How long identical misses wait for the one upstream call; default: the upstream timeout.
    coalesce_wait_seconds: float | None = Field(None, gt=0)

    @property
    def redis_set(self) -> bool:
        """Whether the config gives `redis` (used only with a URL of the cache's own)."""
        return "redis" in self.model_fields_set


class StoreConfig(Strict):
    redis_url_env: str = "REDIS_URL"
    redis: RedisConnectionConfig = RedisConnectionConfig()
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    # How long a Cluster command may wait (its retries through a failover included) before
    # the request gets on_error's answer; a Sentinel's or one server's fails at once.
    wait_seconds: float = Field(1.0, gt=0, le=30)


class MetricsConfig(Strict):
    token_env: str | None = None


class LoggingConfig(Strict):
    """What the access log leaves out."""

    # Successful /healthz, /readyz and /metrics polls: a line every few seconds per prober.
    polls: bool = False


class NotificationsConfig(Strict):
    """How budget alerts reach their webhooks: a background sender per process."""

    # Deliveries waiting to be sent, per process; past it new ones are dropped (and counted).
    queue_size: int = Field(1000, ge=1)
    attempts: int = Field(5, ge=1, le=20)  # per delivery, the first included
    backoff_seconds: float = Field(2.0, gt=0)  # before the first retry, doubling after each
    timeout_seconds: float = Field(10.0, gt=0)  # per attempt
    concurrency: int = Field(4, ge=1, le=64)  # attempts under way at once
    shutdown_seconds: float = Field(5.0, ge=0)  # at shutdown, what is queued gets this long


class LimitsConfig(Strict):
    """How much of a caller's upload the gateway reads, and for how long; how long a
    stopping gateway lets requests under way finish."""

    body_timeout_seconds: float = Field(60.0, gt=0)
    # The request line and headers must arrive within this (else 400 request_timeout).
    header_timeout_seconds: float = Field(10.0, gt=0)
    max_image_side: int = Field(4096, ge=1)
    # At least upstream.timeout_seconds, so that a restart lets a whole image call finish.
    shutdown_grace_seconds: int = Field(int(UPSTREAM_TIMEOUT_SECONDS), ge=0)
    # Variations requests one process serves at once, most of them waiting on the upstream
    # (each holds two sockets, and little memory once its upload is sent); null: no limit.
    max_concurrent_requests: int | None = Field(4096, ge=1)
    # Per process: bytes of uploads held in memory at once, as received, until sent upstream.
    upload_buffer_mb: int = Field(64, ge=5)
    # Uploads one caller holds at once (being read, or not yet sent); the rest wait unread.
    max_uploads_per_caller: int = Field(16, ge=1)


class GatewayConfig(Strict):
    upstream: UpstreamConfig = UpstreamConfig()
    identity: IdentityConfig = IdentityConfig()
    principals: tuple[PrincipalConfig, ...] = ()
    quotas: QuotasConfig = QuotasConfig()
    prices: dict[Size, Price] = Field(default_factory=lambda: dict(DALL_E_2_PRICES))
    cache: CacheConfig = CacheConfig()
    images: ImagesConfig = ImagesConfig()  # the generations and edits endpoints
    store: StoreConfig = StoreConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    limits: LimitsConfig = LimitsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        users = [p.user for p in self.principals]
        if len(set(users)) != len(users):
            raise ValueError("principals: a user is listed twice")
        digests = [p.key_sha256 for p in self.principals]
        if len(set(digests)) != len(digests):
            raise ValueError("principals: two principals share one key")
        missing = set(SIZES) - set(self.prices)
        if missing:
            raise ValueError(f"prices: no price for {', '.join(sorted(missing))}")
        return self


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = _format_loc(tuple(err["loc"]))
        message = "unknown key" if err["type"] == "extra_forbidden" else error_message(err)
        lines.append(f"{loc}: {message}")
    return "\n".join(lines)


def parse_config(raw: Any) -> GatewayConfig:
    """Validate a decoded YAML document; raises `ConfigError` naming each bad key's path."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top level): the config must be a mapping")
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def read_config(path: Path) -> GatewayConfig:
    """Read and validate a YAML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(raw)


def config_warnings(config: GatewayConfig) -> list[str]:
    """Valid settings that are likely mistakes, said at start-up and by `config check`."""
    warnings = identity_warnings(config.identity)
    if "upstream" not in config.model_fields_set:
        warnings.append(
            f"no upstream: section: requests go to {config.upstream.base_url} "
            "(set upstream.base_url; `sandbox` stays offline)"
        )
    if "quotas" not in config.model_fields_set:
        warnings.append("no quotas: section: every caller may call without limit")
    return (
        warnings
        + upstream_warnings(config)
        + images_warnings(config)
        + _placeholder_digests(config)
    )


def images_warnings(config: GatewayConfig) -> list[str]:
    """Generations and edits settings that cannot work as meant: a team limited to models
    no list names, an edits body the upload buffer cannot hold."""
    images, edits = config.images, config.upstream.edits
    listed = set(edits.model_list if edits is not None else ())
    warnings = [
        f"images.teams.{team}.models: {', '.join(unlisted)} not in upstream.edits.models: "
        "the team's generations and edits cannot use them"
        for team, limits in images.teams.items()
        if (unlisted := [m for m in limits.models or () if m not in listed])
    ]
    if images.max_edit_body_mb > config.limits.upload_buffer_mb:
        warnings.append(
            f"images.max_edit_body_mb ({images.max_edit_body_mb}) is over "
            f"limits.upload_buffer_mb ({config.limits.upload_buffer_mb}): one edit may hold "
            "the whole upload buffer, and the others wait for it"
        )
    return warnings


def upstream_warnings(config: GatewayConfig) -> list[str]:
    """Upstream settings that cannot work as meant: a retired endpoint, a parameter the
    model refuses, switches of a sandbox not in use, a drain shorter than a call."""
    upstream, warnings = config.upstream, []
    if upstream.adapter == "variations" and upstream.is_openai:
        warnings.append(
            "upstream.adapter: variations has no live model at api.openai.com: OpenAI's "
            "variations endpoint only ever served dall-e-2, retired on 2026-05-12, so every "
            "call would fail. Set adapter: edits, with a current model such as gpt-image-2 "
            "(config/gateway.edits.example.yaml)"
        )
    edits = upstream.edits
    if edits is not None and edits.input_fidelity is not None:
        takes_none = [m for m in edits.model_list if m.startswith("gpt-image-2")]
        if takes_none:
            warnings.append(
                f"upstream.edits.input_fidelity is set, but {takes_none[0]} takes none (it reads "
                "every input image at high fidelity, per OpenAI's image generation guide): "
                "leave it unset"
            )
    if "sandbox" in upstream.model_fields_set and not upstream.is_sandbox:
        warnings.append("upstream.sandbox: only used with base_url: sandbox")
    grace, timeout = config.limits.shutdown_grace_seconds, upstream.timeout_seconds
    if not upstream.is_sandbox and grace < timeout:
        warnings.append(
            f"limits.shutdown_grace_seconds ({grace}) is under upstream.timeout_seconds "
            f"({timeout:g}): a restart cancels image calls still running after {grace} s "
            "(charged as lost answers, upstream.on_timeout)"
        )
    return warnings


# A SHA-256 shows about 15 of the 16 hex digits; one with fewer than 8 (a chance under 1e-18)
# was typed, as the placeholders of config/gateway.compose.yaml were: no key opens it.
_FEWEST_DIGITS = 8


def _placeholder_digests(config: GatewayConfig) -> list[str]:
    return [
        f"principals[{index}] ({principal.user}): key_sha256 is a placeholder no key matches; "
        "put the entry `gateway keys new` prints in its place"
        for index, principal in enumerate(config.principals)
        if len(set(principal.key_sha256)) < _FEWEST_DIGITS
    ]
