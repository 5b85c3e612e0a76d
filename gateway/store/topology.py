"""Start-up check that the servers a Redis URL names are the topology it says they are,
and that their TLS certificates verify.

A cluster URL pointing at a standalone server, a plain URL pointing at a Cluster node or a
Sentinel, a Sentinel that does not know the service, or a certificate the client refuses
(another CA, another host name, expired) would otherwise fail request by request with
driver errors; this names the problem once, at start-up. Servers that do not answer are
skipped: a Redis that is down now is /readyz's business, not a config error.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.exceptions import AuthenticationError, RedisError

from gateway.store.client import certificate_problem
from gateway.store.connect import TIMEOUTS, auth_kwargs, tls_kwargs
from gateway.store.urls import ConnectOptions, Target, parse_url

HINTS = {
    "standalone": "redis://host:port/db (rediss:// for TLS)",
    "sentinel": "redis+sentinel://host:port[,host:port...]/<service>",
    "cluster": "redis+cluster://host:port[,host:port...]",
}


class TopologyError(Exception):
    """The URL names a topology, credentials or a service that its servers do not have, or
    a server's TLS certificate does not verify."""


def _probe_kwargs(target: Target, options: ConnectOptions) -> dict[str, Any]:
    auth = auth_kwargs(target, options)
    if target.topology == "sentinel":
        auth = {"username": options.sentinel_username, "password": options.sentinel_password}
    ssl = {"ssl": True, **tls_kwargs(target, options)} if target.tls else {}
    return {**TIMEOUTS, **auth, **ssl, "protocol": 2}


async def _check_host(host: str, port: int, target: Target, options: ConnectOptions) -> None:
    where = f"{host}:{port}"
    client = redis.Redis(host=host, port=port, **_probe_kwargs(target, options))
    try:
        mode = (await client.info("server")).get("redis_mode", "standalone")
        if mode != target.topology:
            raise TopologyError(
                f"{where} is a {mode} server, not a {target.topology} one: use {HINTS[mode]}"
            )
        service = target.names[0] if target.topology == "sentinel" else ""
        if service and await client.sentinel_get_master_addr_by_name(service) is None:
            raise TopologyError(f"the Sentinel at {where} does not know the service {service!r}")
    except AuthenticationError as exc:
        raise TopologyError(f"{where} refused the credentials ({exc})") from None
    finally:
        await client.aclose()


async def verify(url: str, options: ConnectOptions | None = None) -> None:
    """Raise `TopologyError` if a server of `url` that answers is not what the URL says, or
    if its certificate does not verify."""
    target = parse_url(url)
    for host, port in target.hosts:
        try:
            await _check_host(host, port, target, options or ConnectOptions())
        except (RedisError, OSError) as exc:
            problem = certificate_problem(exc, f"{host}:{port}")
            if problem is not None:
                raise TopologyError(problem) from None
