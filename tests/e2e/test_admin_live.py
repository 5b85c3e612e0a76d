"""The admin plane across live gateway processes sharing one Redis, driven by the CLI."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from support.config import KEYS, auth, base_config
from support.fake_upstream import FakeUpstream
from support.pngs import make_png
from support.polling import becomes
from support.servers import GatewayProcess, RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
PNG = make_png(16)


def _status_on(gateway: GatewayProcess, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(gateway.url + "/v1/quota", headers=headers, timeout=5).status_code


@pytest.fixture
def pair(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, clean_redis: str
) -> list[GatewayProcess]:
    """Two gateway processes on one Redis, images limited to 1 a day per user."""
    config = {**base_config(upstream.url)}
    config["quotas"] = {"default": [{"unit": "images", "limit": 1, "window": "day"}]}
    return [start_gateway(config, {"REDIS_URL": clean_redis}) for _ in range(2)]


def test_a_key_made_on_one_replica_opens_the_other_and_a_revoke_closes_both(
    pair: list[GatewayProcess],
) -> None:
    """Created through A, the key works on B within 1 s; revoked through B, it is refused
    on both within 1 s."""
    first, second = pair
    body = {"user": "dave", "team": "vision"}
    created = httpx.post(first.url + "/admin/keys", json=body, headers=auth("grafana")).json()
    assert becomes(lambda: _status_on(second, created["key"]) == 200)
    revoked = httpx.delete(f"{second.url}/admin/keys/{created['id']}", headers=auth("grafana"))
    assert revoked.status_code == 200
    assert becomes(lambda: {_status_on(g, created["key"]) for g in pair} == {401})


def test_a_quota_raised_on_one_replica_admits_on_the_other(pair: list[GatewayProcess]) -> None:
    """alice's 1 image a day is spent; raised to 3 through A, B admits her within 1 s."""
    first, second = pair
    assert second.post_variation(PNG).status_code == 200
    assert second.post_variation(PNG).status_code == 429
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 3}]}
    put = httpx.put(first.url + "/admin/quotas/users/alice", json=rules, headers=auth("grafana"))
    assert put.status_code == 200
    assert becomes(
        lambda: httpx.get(second.url + "/v1/quota", headers=auth()).json()["rules"][0]["limit"] == 3
    )
    assert second.post_variation(PNG).status_code == 200


async def _create_keys(admins: list[tuple[str, str]], count: int) -> list[httpx.Response]:
    """`count` key creations at once, alternating the (gateway URL, admin key) pairs, each
    for a user of its own."""
    async with httpx.AsyncClient(timeout=30) as client:
        calls = [
            client.post(
                admins[i % len(admins)][0] + "/admin/keys",
                json={"user": f"bulk-{i}", "team": "vision"},
                headers={"Authorization": f"Bearer {admins[i % len(admins)][1]}"},
            )
            for i in range(count)
        ]
        return list(await asyncio.gather(*calls))


def test_thirty_keys_made_at_once_by_two_admins_on_two_replicas_all_succeed(
    pair: list[GatewayProcess],
) -> None:
    """A provisioning script's burst: 30 creations at once, through both replicas, by the
    config's admin and a runtime admin. They touch 30 different records, so the writes that
    lost a compare-and-set are retried inside the gateway: 30 x 201, 30 keys, 30 entries."""
    first, second = pair
    body = {"user": "ops-bot", "team": "vision", "role": "admin"}
    made = httpx.post(first.url + "/admin/keys", json=body, headers=auth("grafana"))
    assert made.status_code == 201, made.text
    admins = [(first.url, KEYS["grafana"]), (second.url, made.json()["key"])]
    answers = asyncio.run(_create_keys(admins, 30))
    assert [a.status_code for a in answers] == [201] * 30, [a.text for a in answers if a.is_error]
    keys = httpx.get(first.url + "/admin/keys", headers=auth("grafana")).json()["data"]
    assert sorted(k["user"] for k in keys if k["user"].startswith("bulk-")) == sorted(
        f"bulk-{i}" for i in range(30)
    )
    trail = httpx.get(
        first.url + "/admin/audit", params={"action": "key.create", "limit": 100},
        headers=auth("grafana"),
    ).json()["data"]  # fmt: skip
    assert len(trail) == 31


def _cli(gateway: GatewayProcess, *args: str, cwd: Path | None = None) -> Any:
    env = {"GATEWAY_ADMIN_KEY": KEYS["grafana"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--url", gateway.url],
        env=env, capture_output=True, text=True, timeout=30, cwd=cwd, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout) if done.stdout.startswith(("{", "[")) else done.stdout


def test_the_cli_drives_keys_quotas_and_usage_export(
    pair: list[GatewayProcess], tmp_path: Path
) -> None:
    """keys create/list/rotate/revoke, quotas set/unset and usage export against a live
    gateway; each change is one audit entry; the exported CSV is what the API says."""
    gateway = pair[0]
    created = _cli(gateway, "keys", "create", "--user", "dave", "--team", "vision")
    assert _status_on(gateway, created["key"]) == 200
    listed = _cli(gateway, "keys", "list", "--user", "dave")["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    rotated = _cli(gateway, "keys", "rotate", created["id"], "--grace-seconds", "60")
    assert {_status_on(gateway, k) for k in (created["key"], rotated["key"])} == {200}
    _cli(gateway, "keys", "revoke", created["id"])
    assert _status_on(gateway, rotated["key"]) == 401
    _cli(gateway, "quotas", "set", "--team", "vision", "--rule", "images:day:5")
    _cli(gateway, "quotas", "unset", "--team", "vision")
    assert gateway.post_variation(PNG, n="1", size="256x256").status_code == 200
    audit = httpx.get(gateway.url + "/admin/audit", headers=auth("grafana")).json()["data"]
    assert [e["action"] for e in audit] == [
        "quota.unset", "quota.set", "key.revoke", "key.rotate", "key.create",
    ]  # fmt: skip
    month = time.strftime("%Y-%m", time.gmtime())
    _cli(
        gateway,
        "usage",
        "export",
        "--month",
        month,
        "--by",
        "user",
        "--format",
        "csv",
        cwd=tmp_path,
    )
    with (tmp_path / f"usage-{month}-by-user.csv").open() as exported:
        rows = list(csv.DictReader(exported))
    assert rows == [
        {"team": "vision", "user": "alice", "requests": "1", "images": "1", "usd": "0.016000",
         "cache_hits": "0"}
    ]  # fmt: skip


def test_the_cli_says_why_a_change_is_refused(pair: list[GatewayProcess]) -> None:
    """A refused change exits 2 with the gateway's error code, and changes nothing."""
    env = {"GATEWAY_ADMIN_KEY": KEYS["alice"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "list", "--url", pair[0].url],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "permission_denied" in done.stderr


def test_with_the_state_redis_down_replicas_keep_the_last_admin_state(
    start_gateway: Callable[..., GatewayProcess], upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Redis stopped: within a second a runtime key is no longer honoured (503: the replica
    cannot confirm it was not revoked), a revoked one stays refused, a config key keeps
    being served by a gateway without quota rules (the books alone refuse nobody), admin
    calls are 503; once Redis is back a revocation made then reaches the replica."""
    own_redis = RedisServer(tmp_path, persistent=True).start()
    try:
        _outage(start_gateway(base_config(upstream.url), {"REDIS_URL": own_redis.url}), own_redis)
    finally:
        own_redis.stop()


def _variation_with(gateway: GatewayProcess, key: str) -> int:
    response = httpx.post(
        gateway.url + "/v1/images/variations",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("a.png", PNG, "image/png")},
        timeout=10,
    )
    return response.status_code


def _outage(gateway: GatewayProcess, own_redis: RedisServer) -> None:
    with httpx.Client(base_url=gateway.url, headers=auth("grafana"), timeout=10) as admin:
        kept = admin.post("/admin/keys", json={"user": "dave", "team": "vision"}).json()
        gone = admin.post("/admin/keys", json={"user": "erin", "team": "vision"}).json()
        admin.delete(f"/admin/keys/{gone['id']}")
        own_redis.stop()
        assert becomes(lambda: _variation_with(gateway, kept["key"]) == 503, 2.0)
        assert _variation_with(gateway, gone["key"]) == 401
        assert _variation_with(gateway, KEYS["alice"]) == 200
        refused = admin.get("/admin/keys")
        assert (
            refused.status_code == 503
            and refused.json()["error"]["code"] == "quota_backend_unavailable"
        )
        own_redis.start()
        assert admin.delete(f"/admin/keys/{kept['id']}").status_code == 200
    assert becomes(lambda: _status_on(gateway, kept["key"]) == 401)
