"""The config file and the environment, turned once into one frozen, validated `Settings`.

Nothing else in the gateway reads `os.environ` or the config file: `load_settings` is called
once at start-up and its result is passed in explicitly. Secrets come only from the
environment and are held as `SecretStr`, whose repr is masked.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

Unit = Literal["requests", "images", "usd"]
Window = Literal["minute", "hour", "day", "month"]
Size = Literal["256x256", "512x512", "1024x1024"]
SIZES: tuple[Size, ...] = ("256x256", "512x512", "1024x1024")
SANDBOX = "sandbox"
DALL_E_2_PRICES: dict[Size, float] = {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.020}


class ConfigError(Exception):
    """The configuration is unusable; the message names the offending key's path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    base_url: str = "https://api.openai.com/v1"
    adapter: Literal["variations", "edits"] = "variations"
    api_key_env: str = "OPENAI_API_KEY"
    organization: str | None = None
    project: str | None = None
    timeout_seconds: float = Field(120.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    max_connections: int = Field(512, ge=1)
    models: tuple[str, ...] = Field(("dall-e-2",), min_length=1)

    @property
    def is_sandbox(self) -> bool:
        return self.base_url == SANDBOX


HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$")]
ClaimName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]

# Signature algorithms a token may use: public-key ones only, each bound to its key type.
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _check_algorithm(name: str) -> str:
    if name.lower() == "none":
        raise ValueError("'none' is not allowed: tokens must be signed")
    if name.upper().startswith("HS"):
        # An HMAC "secret" would be the IdP's public key, which anyone can fetch.
        raise ValueError(f"{name} is an HMAC algorithm: only public-key algorithms are allowed")
    if name not in JWT_ALGORITHMS:
        raise ValueError(f"{name} is not supported (one of {', '.join(sorted(JWT_ALGORITHMS))})")
    return name


class JwtConfig(_Strict):
    """Company SSO tokens (OIDC JWTs) as bearer credentials, verified against the IdP's JWKS."""

    issuer: str = Field(min_length=1)  # compared exactly with the token's `iss`
    audience: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^https?://[^\s/]+")
    algorithms: tuple[str, ...] = Field(("RS256",), min_length=1)
    leeway_seconds: float = Field(30.0, ge=0, le=600)
    user_claim: ClaimName = "sub"
    team_claim: ClaimName | None = None
    groups_claim: ClaimName | None = None
    group_teams: dict[str, Name] = Field(default_factory=dict)  # first listed group wins
    default_team: Name | None = None
    admin_claim: ClaimName | None = None  # a string or list claim, e.g. roles or groups
    admin_values: tuple[str, ...] = ()  # any of these in admin_claim makes the caller admin
    jwks_cache_seconds: float = Field(300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(30.0, ge=0)
    jwks_timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value  # the token's `aud` names one

    @field_validator("algorithms")
    @classmethod
    def _public_key_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_algorithm(name) for name in value)

    @model_validator(mode="after")
    def _mappings_complete(self) -> JwtConfig:
        if self.group_teams and not self.groups_claim:
            raise ValueError("group_teams needs groups_claim (the claim listing the groups)")
        if not (self.team_claim or self.group_teams or self.default_team):
            raise ValueError("set team_claim, groups_claim with group_teams, or default_team")
        if bool(self.admin_claim) != bool(self.admin_values):
            raise ValueError("admin_claim and admin_values go together")
        return self


class TrustedHeaderConfig(_Strict):
    """Identity asserted in headers by an authenticating proxy, believed only from `proxies`."""

    user_header: HeaderName = "X-Forwarded-User"
    team_header: HeaderName | None = None
    default_team: Name | None = None
    role_header: HeaderName | None = None  # comma-separated values; see admin_values
    admin_values: tuple[str, ...] = ("admin",)
    proxies: tuple[str, ...] = Field(min_length=1)  # CIDRs of the proxies' own addresses

    @field_validator("proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr)  # ValueError names the bad entry (e.g. host bits set)
        return value

    @model_validator(mode="after")
    def _team_source(self) -> TrustedHeaderConfig:
        if not (self.team_header or self.default_team):
            raise ValueError("set team_header or default_team")
        return self


class IdentityConfig(_Strict):
    user_field: Literal["hashed", "plain"] = "hashed"
    secret_env: str = "GATEWAY_USER_SECRET"  # noqa: S105 - the variable's name, not a secret
    jwt: JwtConfig | None = None
    trusted_header: TrustedHeaderConfig | None = None


class PrincipalConfig(_Strict):
    user: Name
    team: Name
    role: Literal["user", "admin"] = "user"
    key_sha256: HexDigest


class QuotaRule(_Strict):
    unit: Unit
    limit: float = Field(ge=0)
    window: Window


def _unique_rules(rules: tuple[QuotaRule, ...]) -> tuple[QuotaRule, ...]:
    seen = {(rule.unit, rule.window) for rule in rules}
    if len(seen) != len(rules):
        raise ValueError("two rules with the same unit and window")
    return rules


RuleList = tuple[QuotaRule, ...]


class QuotasConfig(_Strict):
    default: RuleList = ()
    users: dict[Name, RuleList] = Field(default_factory=dict)
    teams: dict[Name, RuleList] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_duplicate_rules(self) -> QuotasConfig:
        _unique_rules(self.default)
        for rules in (*self.users.values(), *self.teams.values()):
            _unique_rules(rules)
        return self


class CacheConfig(_Strict):
    enabled: bool = True
    redis_url_env: str = "CACHE_REDIS_URL"
    scope: Literal["global", "team", "user"] = "global"
    ttl_seconds: int = Field(86400, ge=1)
    max_entry_bytes: int = Field(32 * 1024 * 1024, ge=1)
    hits_count_against: tuple[Unit, ...] = ("requests",)
    # How long identical misses wait for the one upstream call; default: the upstream timeout.
    coalesce_wait_seconds: float | None = Field(None, gt=0)


class StoreConfig(_Strict):
    redis_url_env: str = "REDIS_URL"
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"


class MetricsConfig(_Strict):
    token_env: str | None = None


class LimitsConfig(_Strict):
    """How much of a caller's upload the gateway reads, and for how long."""

    body_timeout_seconds: float = Field(60.0, gt=0)
    max_image_side: int = Field(4096, ge=1)
    # Per process: uploads held in memory at once, by declared size (one upload at least).
    upload_buffer_mb: int = Field(64, ge=5)


# A negative price would turn usd quotas into credit; NaN or infinity would poison counters.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class GatewayConfig(_Strict):
    upstream: UpstreamConfig = UpstreamConfig()
    identity: IdentityConfig = IdentityConfig()
    principals: tuple[PrincipalConfig, ...] = ()
    quotas: QuotasConfig = QuotasConfig()
    prices: dict[Size, Price] = Field(default_factory=lambda: dict(DALL_E_2_PRICES))
    cache: CacheConfig = CacheConfig()
    store: StoreConfig = StoreConfig()
    metrics: MetricsConfig = MetricsConfig()
    limits: LimitsConfig = LimitsConfig()

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


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs at run time: the config plus secrets from the environment."""

    config: GatewayConfig
    upstream_api_key: SecretStr | None
    user_secret: SecretStr
    redis_url: SecretStr | None
    cache_redis_url: SecretStr | None
    metrics_token: SecretStr | None
    demo_key: SecretStr | None
    public_url: str
    multiprocess_dir: str | None = None  # set by `serve --workers N` for shared metrics
    warnings: tuple[str, ...] = ()


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = _format_loc(tuple(err["loc"]))
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
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


def _secret(env: Mapping[str, str], name: str | None) -> SecretStr | None:
    value = env.get(name, "") if name else ""
    return SecretStr(value) if value else None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def identity_warnings(identity: IdentityConfig) -> list[str]:
    """Risky but valid identity settings, said out loud at start-up and by `config check`."""
    warnings = []
    jwt = identity.jwt
    if jwt is not None:
        url = urlsplit(jwt.jwks_url)
        if url.scheme == "http" and not _is_loopback(url.hostname or ""):
            warnings.append(
                "identity.jwt.jwks_url is plain http: whoever sits on the path can forge tokens"
            )
    headers = identity.trusted_header
    if headers is not None:
        for cidr in headers.proxies:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                warnings.append(
                    f"identity.trusted_header.proxies: {cidr} trusts every address, so anyone "
                    "can claim any identity in a header"
                )
    return warnings


def build_settings(config: GatewayConfig, env: Mapping[str, str]) -> Settings:
    """Join a validated config with the secrets of `env`; raises `ConfigError` if one is missing."""
    warnings = identity_warnings(config.identity)
    upstream_key = _secret(env, config.upstream.api_key_env)
    if upstream_key is None and not config.upstream.is_sandbox:
        raise ConfigError(
            f"upstream.api_key_env: environment variable {config.upstream.api_key_env} is not set"
        )
    user_secret = _secret(env, config.identity.secret_env)
    if user_secret is None:
        if config.identity.user_field == "hashed" and not config.upstream.is_sandbox:
            raise ConfigError(
                f"identity.secret_env: environment variable {config.identity.secret_env} "
                "is not set (needed for user_field: hashed)"
            )
        # Sandbox only: a per-process secret keeps local runs zero-setup.
        user_secret = SecretStr(secrets.token_hex(32))
        warnings.append(f"{config.identity.secret_env} unset: using a random per-process secret")
    demo_key = _secret(env, "GATEWAY_DEMO_KEY")
    if demo_key is not None and not config.upstream.is_sandbox:
        raise ConfigError(
            "GATEWAY_DEMO_KEY: a demo key is only allowed with upstream.base_url: sandbox"
        )
    redis_url = _secret(env, config.store.redis_url_env)
    return Settings(
        config=config,
        upstream_api_key=upstream_key,
        user_secret=user_secret,
        redis_url=redis_url,
        cache_redis_url=_secret(env, config.cache.redis_url_env) or redis_url,
        metrics_token=_secret(env, config.metrics.token_env),
        demo_key=demo_key,
        public_url=env.get("GATEWAY_PUBLIC_URL", "http://127.0.0.1:8080").rstrip("/"),
        multiprocess_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        warnings=tuple(warnings),
    )


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read the config file at `path` and join it with the secrets in `env`."""
    return build_settings(read_config(path), env)
