"""The environment variables `gateway serve` reads for a config: which, what for, and which
of them it cannot start without.

One list serves both `build_settings` (which refuses to start when a required one is unset)
and `gateway config check` (which reports them, set or not, without needing their values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from gateway.settings.config import GatewayConfig

PUBLIC_URL = "GATEWAY_PUBLIC_URL"
DEMO_KEY = "GATEWAY_DEMO_KEY"
DEMO_ADMIN_KEY = "GATEWAY_DEMO_ADMIN_KEY"  # the admin beside the demo user: local runs only


class EnvVar(NamedTuple):
    """An environment variable `serve` reads: its name, the config key naming it, if any,
    whether `serve` refuses to start without it, and what it is for."""

    name: str
    key: str | None
    required: bool
    purpose: str


def _upstream_key(config: GatewayConfig) -> EnvVar:
    upstream = config.upstream
    if upstream.is_sandbox:
        return EnvVar(upstream.api_key_env, "upstream.api_key_env", False, "not used (sandbox)")
    return EnvVar(upstream.api_key_env, "upstream.api_key_env", True, "the company's upstream key")


def _user_secret(config: GatewayConfig) -> EnvVar:
    identity, key = config.identity, "identity.secret_env"
    if identity.user_field == "plain":
        return EnvVar(identity.secret_env, key, False, "not used (user_field: plain)")
    if config.upstream.is_sandbox:
        return EnvVar(identity.secret_env, key, False, "user pseudonyms; unset: random per process")
    return EnvVar(identity.secret_env, key, True, "HMAC secret for the user pseudonyms")


def _redis(config: GatewayConfig) -> tuple[EnvVar, ...]:
    store, cache = config.store.redis_url_env, config.cache.redis_url_env
    return (
        EnvVar(store, "store.redis_url_env", False, "quota Redis; unset: in-process, one process"),
        EnvVar(cache, "cache.redis_url_env", False, f"cache Redis; unset: {store}'s"),
    )


def _optional(config: GatewayConfig) -> tuple[EnvVar, ...]:
    found = []
    if config.metrics.token_env:
        found.append(
            EnvVar(config.metrics.token_env, "metrics.token_env", False, "/metrics bearer token")
        )
    jwt = config.identity.jwt
    if jwt and jwt.console and jwt.console.client_secret_env:
        key = "identity.jwt.console.client_secret_env"
        found.append(
            EnvVar(jwt.console.client_secret_env, key, True, "the console's IdP client secret")
        )
    if config.upstream.is_sandbox or config.upstream.adapter == "edits":
        found.append(EnvVar(PUBLIC_URL, None, False, "address in image URLs; unset: --host:--port"))
    if config.upstream.is_sandbox:
        found.append(EnvVar(DEMO_KEY, None, False, "with --demo-key; unset: a fresh key"))
        found.append(
            EnvVar(DEMO_ADMIN_KEY, None, False, "with --demo-key, local admin; unset: a fresh key")
        )
    return tuple(found)


def environment_needs(config: GatewayConfig) -> tuple[EnvVar, ...]:
    """Every variable `serve` reads for `config` (secrets and URLs), required ones first."""
    found = (_upstream_key(config), _user_secret(config), *_redis(config), *_optional(config))
    return tuple(sorted(found, key=lambda var: not var.required))


def missing_required(config: GatewayConfig, env: Mapping[str, str]) -> list[EnvVar]:
    """The required variables `env` leaves unset or empty."""
    return [var for var in environment_needs(config) if var.required and not env.get(var.name)]
