"""The ways to reach a Redis, against real servers: TLS, ACL users, and start-up errors
that name a wrong topology."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.config import ENV
from support.redis_topologies import SERVICE, RedisClusterGroup, SentinelGroup
from support.servers import RedisServer, free_port
from support.tls import TlsFiles, make_tls_files, tls_client_options, tls_server_args

from gateway.settings.build import build_settings
from gateway.settings.config import ConfigError, parse_config
from gateway.store.base import ChargeItem, StoreError
from gateway.store.connect import connect
from gateway.store.redis import RedisStore
from gateway.store.topology import TopologyError, verify
from gateway.store.urls import ConnectOptions
from gateway.store.urls import TlsFiles as ClientTls

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this module, with a server certificate for `localhost` only."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Redis that speaks only TLS and asks clients for a certificate; yields its port."""
    port = free_port()
    probe = {**tls_client_options(tls_files), "ssl_check_hostname": False}
    server = RedisServer(
        tmp_path_factory.mktemp("tls-redis"), extra=tls_server_args(tls_files, port), probe=probe
    )
    server.port = port
    server.start()
    yield port
    server.stop()


def _charge(url: str, options: ConnectOptions) -> list[int]:
    async def run() -> list[int]:
        store = RedisStore(connect(url, options))
        try:
            await store.ping()
            now = store.clock("t")
            item = ChargeItem("gw:v1:test:{t}:tls", 1, 10, now - 60, now + 60)
            outcome = await store.charge([item])
            assert outcome is not None
            return outcome.used
        finally:
            await store.close()

    return asyncio.run(run())


def _tls(files: TlsFiles, **overrides: Any) -> ConnectOptions:
    tls = ClientTls(str(files.ca), str(files.client_cert), str(files.client_key))
    return ConnectOptions(tls=ClientTls(**{**tls.__dict__, **overrides}))


def test_tls_with_the_ca_and_a_client_certificate_charges(
    tls_redis: int, tls_files: TlsFiles
) -> None:
    """rediss:// with the CA file and a client certificate reaches a TLS-only Redis."""
    assert _charge(f"rediss://localhost:{tls_redis}/0", _tls(tls_files)) == [1]


def test_tls_refuses_a_server_whose_name_does_not_match(
    tls_redis: int, tls_files: TlsFiles
) -> None:
    """The server's certificate names localhost: reached as 127.0.0.1 it is refused, with
    an error that says why (for the logs), unless hostname checking is turned off (the CA
    is still checked)."""
    with pytest.raises(StoreError, match=r"TLS certificate refused: .*mismatch"):
        _charge(f"rediss://127.0.0.1:{tls_redis}/0", _tls(tls_files))
    assert _charge(f"rediss://127.0.0.1:{tls_redis}/0", _tls(tls_files, check_hostname=False))


def test_tls_without_the_client_certificate_is_refused(tls_redis: int, tls_files: TlsFiles) -> None:
    """A server that asks for client certificates refuses a client without one."""
    with pytest.raises(StoreError):
        _charge(f"rediss://localhost:{tls_redis}/0", _tls(tls_files, cert_file=None, key_file=None))


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis whose default user is off: only the ACL user `gateway` may connect."""
    acl = ["--user", "default", "off", "--user", "gateway", "on", ">s3cret", "~gw:*", "+@all"]
    server = RedisServer(tmp_path, extra=acl, probe={"username": "gateway", "password": "s3cret"})
    server.start()
    yield server
    server.stop()


def test_acl_credentials_come_from_the_environment(acl_redis: RedisServer) -> None:
    """username_env/password_env name the variables holding the ACL user: with them the
    store works, with a wrong password start-up says the credentials were refused."""
    config = parse_config(
        {"store": {"redis": {"username_env": "REDIS_USER", "password_env": "REDIS_PASSWORD"}}}
    )
    env = {**ENV, "REDIS_URL": acl_redis.url, "REDIS_USER": "gateway"}
    settings = build_settings(config, {**env, "REDIS_PASSWORD": "s3cret"})
    assert _charge(acl_redis.url, settings.redis_options) == [1]
    wrong = build_settings(config, {**env, "REDIS_PASSWORD": "wrong"})
    with pytest.raises(TopologyError, match="refused the credentials"):
        asyncio.run(verify(acl_redis.url, wrong.redis_options))
    assert "s3cret" not in repr(settings)


def test_a_missing_credential_variable_is_named() -> None:
    """A password_env that is not set is a config error naming the variable."""
    config = parse_config({"store": {"redis": {"password_env": "REDIS_PASSWORD"}}})
    with pytest.raises(ConfigError, match=r"store\.redis\.password_env: .*REDIS_PASSWORD"):
        build_settings(config, {**ENV, "REDIS_URL": "redis://127.0.0.1:1/0"})


def test_a_url_of_no_known_form_is_named_without_quoting_it() -> None:
    """A REDIS_URL that is no Redis URL is refused naming the variable, never its value."""
    with pytest.raises(ConfigError, match="REDIS_URL: not a Redis URL") as refused:
        build_settings(parse_config({}), {**ENV, "REDIS_URL": "http://u:hunter2@h/"})
    assert "hunter2" not in str(refused.value)


def test_a_cluster_url_at_a_standalone_server_is_a_start_up_error(clean_redis: str) -> None:
    """redis+cluster:// naming a standalone server says so, and which URL form fits."""
    port = clean_redis.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(TopologyError, match=r"standalone server.*use redis://"):
        asyncio.run(verify(f"redis+cluster://127.0.0.1:{port}"))


def test_a_plain_url_at_a_cluster_node_is_a_start_up_error(
    redis_cluster: RedisClusterGroup,
) -> None:
    """redis:// naming a Cluster node says it is one and points to redis+cluster://."""
    url = f"redis://127.0.0.1:{redis_cluster.nodes[0].port}/0"
    with pytest.raises(TopologyError, match=r"cluster server.*redis\+cluster://"):
        asyncio.run(verify(url))


def test_a_sentinel_that_does_not_know_the_service_is_a_start_up_error(
    redis_sentinel: SentinelGroup,
) -> None:
    """A Sentinel URL naming a service the Sentinels do not monitor is refused by name."""
    wrong = redis_sentinel.url.replace(f"/{SERVICE}", "/no-such-service")
    asyncio.run(verify(redis_sentinel.url))
    with pytest.raises(TopologyError, match="does not know the service 'no-such-service'"):
        asyncio.run(verify(wrong))


def test_a_server_that_is_down_is_left_to_readiness() -> None:
    """A URL whose server does not answer is no start-up error: /readyz reports it."""
    asyncio.run(verify(f"redis+cluster://127.0.0.1:{free_port()}"))
