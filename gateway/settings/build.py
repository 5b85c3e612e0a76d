"""The config and the environment, turned once into one frozen, validated `Settings`.

Nothing else in the gateway reads `os.environ` or the config file: `load_settings` is called
once at start-up and its result is passed in explicitly. Secrets come only from the
environment and are held as `SecretStr`, whose repr is masked.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from gateway.settings.config import (
    CacheConfig,
    EnvironmentProblem,
    GatewayConfig,
    StoreConfig,
    config_warnings,
    read_config,
)
from gateway.settings.environment import DEMO_ADMIN_KEY, DEMO_KEY, PUBLIC_URL, missing_required
from gateway.settings.redis import check_url, redis_options
from gateway.store.urls import ConnectOptions


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs at run time: the config plus secrets from the environment."""

    config: GatewayConfig
    upstream_api_key: SecretStr | None
    user_secret: SecretStr
    redis_url: SecretStr | None
    cache_redis_url: SecretStr | None
    metrics_token: SecretStr | None
    console_client_secret: SecretStr | None  # the console's IdP client, if it has a secret
    demo_key: SecretStr | None
    public_url: str
    multiprocess_dir: str | None = None  # set by `serve --workers N` for shared metrics
    redis_options: ConnectOptions = field(default_factory=ConnectOptions)
    cache_redis_options: ConnectOptions = field(default_factory=ConnectOptions)
    warnings: tuple[str, ...] = ()
    demo_admin_key: SecretStr | None = None  # beside the demo key: the console, locally


def _secret(env: Mapping[str, str], name: str | None) -> SecretStr | None:
    value = env.get(name, "") if name else ""
    return SecretStr(value) if value else None


def _require(config: GatewayConfig, env: Mapping[str, str]) -> None:
    missing = missing_required(config, env)
    if missing:
        raise EnvironmentProblem(
            "\n".join(
                f"{var.key}: environment variable {var.name} is not set ({var.purpose})"
                for var in missing
            )
        )


def check_redis_urls(config: GatewayConfig, env: Mapping[str, str]) -> None:
    """Each Redis URL of `env` that `serve` would use (the store's, the cache's), checked as
    its client will read it: the one check `serve` and `config check` share. Raises
    `EnvironmentProblem` naming the variable (or the key) at fault."""
    for section, path in ((config.store, "store"), (config.cache, "cache")):
        url = env.get(section.redis_url_env, "")
        if url:
            try:
                check_url(section.redis, url, section.redis_url_env, f"{path}.redis")
            except ValueError as exc:
                raise EnvironmentProblem(str(exc)) from None


def _redis_options(
    config: GatewayConfig, url: SecretStr | None, env: Mapping[str, str], path: str
) -> ConnectOptions:
    """How to reach the Redis of `config`'s section `path` (store or cache), with the
    store's bounded wait; raises `ConfigError` naming the variable or key."""
    section: StoreConfig | CacheConfig = getattr(config, path)
    if url is None:
        return ConnectOptions()
    try:
        options = redis_options(
            section.redis, url.get_secret_value(), section.redis_url_env, env, f"{path}.redis"
        )
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None
    return dataclasses.replace(options, wait_seconds=config.store.wait_seconds)


def _own_cache_redis(cache_url: SecretStr | None, redis_url: SecretStr | None) -> bool:
    """Whether the cache has a Redis of its own (reached with `cache.redis`): not when its
    URL is unset or the store's, which it then shares, client and settings alike."""
    if cache_url is None:
        return False
    return redis_url is None or cache_url.get_secret_value() != redis_url.get_secret_value()


def _demo_keys(
    config: GatewayConfig, env: Mapping[str, str]
) -> tuple[SecretStr | None, SecretStr | None]:
    """The demo key and the demo admin key of `env`: with the sandbox only, as the admin one
    opens the admin plane to whoever holds it."""
    keys = (_secret(env, DEMO_KEY), _secret(env, DEMO_ADMIN_KEY))
    for name, key in zip((DEMO_KEY, DEMO_ADMIN_KEY), keys, strict=True):
        if key is not None and not config.upstream.is_sandbox:
            raise EnvironmentProblem(
                f"{name}: a demo key is only allowed with upstream.base_url: sandbox"
            )
    return keys


def build_settings(config: GatewayConfig, env: Mapping[str, str]) -> Settings:
    """Join a validated config with the secrets of `env`; raises `ConfigError` if one is missing."""
    _require(config, env)
    check_redis_urls(config, env)
    warnings = config_warnings(config)
    upstream_key = _secret(env, config.upstream.api_key_env)
    user_secret = _secret(env, config.identity.secret_env)
    if user_secret is None:
        # Not required here (sandbox, or plain user ids): a per-process secret keeps
        # local runs zero-setup.
        user_secret = SecretStr(secrets.token_hex(32))
        if config.identity.user_field == "hashed":
            warnings.append(
                f"{config.identity.secret_env} unset: using a random per-process secret"
            )
    demo_key, demo_admin_key = _demo_keys(config, env)
    redis_url = _secret(env, config.store.redis_url_env)
    cache_url = _secret(env, config.cache.redis_url_env)
    store_options = _redis_options(config, redis_url, env, "store")
    return Settings(
        config=config,
        upstream_api_key=upstream_key,
        user_secret=user_secret,
        redis_url=redis_url,
        cache_redis_url=cache_url or redis_url,
        redis_options=store_options,
        cache_redis_options=(
            _redis_options(config, cache_url, env, "cache")
            if _own_cache_redis(cache_url, redis_url)
            else store_options
        ),
        metrics_token=_secret(env, config.metrics.token_env),
        console_client_secret=_secret(env, _console_secret_env(config)),
        demo_key=demo_key,
        demo_admin_key=demo_admin_key,
        public_url=env.get(PUBLIC_URL, "http://127.0.0.1:8080").rstrip("/"),
        multiprocess_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        warnings=tuple(warnings),
    )


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read the config file at `path` and join it with the secrets in `env`."""
    return build_settings(read_config(path), env)


def _console_secret_env(config: GatewayConfig) -> str | None:
    jwt = config.identity.jwt
    return jwt.console.client_secret_env if jwt and jwt.console else None
