"""How the gateway reaches each Redis beyond its URL: ACL credentials, Sentinel auth, TLS.

The URL (a secret, from the environment) names the topology; this section names the
environment variables holding credentials and the files TLS needs. `redis_options` turns
it into the store layer's `ConnectOptions`, checking what can be checked before start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import model_validator

from gateway.settings.types import Strict
from gateway.store.urls import ConnectOptions, TlsFiles, parse_url


class RedisTlsConfig(Strict):
    """Files for `rediss://` URLs: the CA to trust (else the system's), and a client
    certificate for servers that ask for one."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True  # off only for servers reached by an address not in their cert

    @model_validator(mode="after")
    def _paired(self) -> RedisTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class RedisConnectionConfig(Strict):
    """Environment variables with the Redis ACL user and password (else the URL's), and the
    Sentinels' own; TLS files for `rediss` URLs."""

    username_env: str | None = None
    password_env: str | None = None
    sentinel_username_env: str | None = None
    sentinel_password_env: str | None = None
    tls: RedisTlsConfig | None = None


def _env(env: Mapping[str, str], name: str | None, path: str) -> str | None:
    if name is None:
        return None
    value = env.get(name, "")
    if not value:
        raise ValueError(f"{path}: environment variable {name} is not set")
    return value


def _tls(config: RedisTlsConfig | None, path: str) -> TlsFiles | None:
    if config is None:
        return None
    for key in ("ca_file", "cert_file", "key_file"):
        name = getattr(config, key)
        if name is not None and not Path(name).is_file():
            raise ValueError(f"{path}.tls.{key}: no such file {name}")
    return TlsFiles(config.ca_file, config.cert_file, config.key_file, config.check_hostname)


def check_url(config: RedisConnectionConfig, url: str, url_env: str, path: str) -> None:
    """Refuse `url` (from `url_env`) as the clients would, before any is made: its form, its
    path, and TLS files set for a URL without TLS. Needs no other secret.

    Raises `ValueError` naming the variable or key at fault, never quoting the URL (it may
    hold a password).
    """
    try:
        target = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"{url_env}: {exc}") from None
    if config.tls is not None and not target.tls:
        raise ValueError(f"{path}.tls: set, but {url_env} is not a TLS URL (rediss://...)")


def redis_options(
    config: RedisConnectionConfig, url: str, url_env: str, env: Mapping[str, str], path: str
) -> ConnectOptions:
    """The connection options for `url` (from `url_env`), section `path` of the config.

    Raises `ValueError` as `check_url` does, or naming a credential variable that is unset.
    """
    check_url(config, url, url_env, path)
    return ConnectOptions(
        username=_env(env, config.username_env, f"{path}.username_env"),
        password=_env(env, config.password_env, f"{path}.password_env"),
        sentinel_username=_env(env, config.sentinel_username_env, f"{path}.sentinel_username_env"),
        sentinel_password=_env(env, config.sentinel_password_env, f"{path}.sentinel_password_env"),
        tls=_tls(config.tls, path),
    )
