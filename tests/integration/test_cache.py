"""The answer cache through the app: keys, Cache-Control, TTLs, quota on hits."""

from __future__ import annotations

import dataclasses

import pytest
from starlette.testclient import TestClient
from support.config import auth
from support.fake_upstream import FakeUpstream, Reply, images_response
from support.fixtures import AppFactory
from support.hashers import CountingHashers
from support.requests import DEFAULT_PNG, PATH, assert_openai_error, post_variation

from gateway.cache import ResponseCache
from gateway.settings.config import CacheConfig
from gateway.store.memory import MemoryCacheStore


@pytest.fixture
def cached(make_client: AppFactory) -> TestClient:
    return make_client({"cache": {"enabled": True}})


def test_same_bytes_and_parameters_hit_whatever_the_framing(
    cached: TestClient, upstream: FakeUpstream
) -> None:
    """Filename, part content type, field order and boundary do not change the key."""
    from support.requests import DEFAULT_PNG

    first = post_variation(cached, fields={"n": "2", "size": "256x256"}, filename="a.png")
    assert first.headers["x-gateway-cache"] == "MISS"
    boundary = "zzBoundary"
    disposition = "Content-Disposition: form-data; name="
    body = (
        (
            f'--{boundary}\r\n{disposition}"size"\r\n\r\n256x256\r\n'
            f'--{boundary}\r\n{disposition}"image"; filename="other name.bin"\r\n'
            f"Content-Type: image/x-anything\r\n\r\n"
        ).encode()
        + DEFAULT_PNG
        + (f'\r\n--{boundary}\r\n{disposition}"n"\r\n\r\n2\r\n--{boundary}--\r\n').encode()
    )
    second = cached.post(
        PATH,
        content=body,
        headers={**auth("bob"), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert second.status_code == 200
    assert second.headers["x-gateway-cache"] == "HIT"
    assert second.content == first.content  # the stored body, `created` included
    assert "x-upstream-request-id" not in second.headers
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    "change",
    [{"n": "3"}, {"size": "512x512"}, {"response_format": "b64_json"}],
    ids=["n", "size", "format"],
)
def test_any_parameter_change_misses(
    cached: TestClient, upstream: FakeUpstream, change: dict[str, str]
) -> None:
    """A different n, size or response_format is another entry."""
    base = {"n": "2", "size": "256x256", "response_format": "url"}
    post_variation(cached, fields=base)
    response = post_variation(cached, fields={**base, **change})
    assert response.headers["x-gateway-cache"] == "MISS"
    assert len(upstream.received) == 2


def test_other_image_bytes_miss_and_caller_user_is_not_in_the_key(
    cached: TestClient, upstream: FakeUpstream
) -> None:
    """Other bytes miss; the caller's own `user` field does not split entries."""
    from support.pngs import make_png

    post_variation(cached, fields={"user": "one"})
    assert post_variation(cached, fields={"user": "two"}).headers["x-gateway-cache"] == "HIT"
    assert post_variation(cached, image=make_png(33)).headers["x-gateway-cache"] == "MISS"
    assert len(upstream.received) == 2


def test_no_cache_skips_lookup_but_stores(cached: TestClient, upstream: FakeUpstream) -> None:
    """Cache-Control: no-cache fetches afresh and refreshes the entry."""
    post_variation(cached)
    refreshed = post_variation(cached, headers={"Cache-Control": "no-cache"})
    assert refreshed.headers["x-gateway-cache"] == "MISS"
    assert post_variation(cached).headers["x-gateway-cache"] == "HIT"
    assert len(upstream.received) == 2


def test_no_store_bypasses_lookup_and_storage(cached: TestClient, upstream: FakeUpstream) -> None:
    """Cache-Control: no-store neither reads nor writes the cache."""
    assert (
        post_variation(cached, headers={"Cache-Control": "no-store"}).headers["x-gateway-cache"]
        == "BYPASS"
    )
    assert post_variation(cached).headers["x-gateway-cache"] == "MISS"
    assert (
        post_variation(cached, headers={"Cache-Control": "max-age=0, no-store"}).headers[
            "x-gateway-cache"
        ]
        == "BYPASS"
    )
    assert len(upstream.received) == 3


def test_disabled_cache_answers_bypass(make_client: AppFactory, upstream: FakeUpstream) -> None:
    """With cache.enabled false every answer says BYPASS and reaches upstream."""
    client = make_client()
    assert [post_variation(client).headers["x-gateway-cache"] for _ in range(2)] == [
        "BYPASS",
        "BYPASS",
    ]
    assert len(upstream.received) == 2


def test_url_answers_expiring_soon_are_not_cached(
    cached: TestClient, upstream: FakeUpstream
) -> None:
    """URLs that expire within the safety margin are never served from the cache."""
    upstream.reply(
        Reply(
            body={
                "created": 1,
                "data": [{"url": "https://x.invalid/a.png?se=2000-01-01T00%3A00%3A00Z"}],
            }
        )
    )
    post_variation(cached)
    assert post_variation(cached).headers["x-gateway-cache"] == "MISS"


def test_errors_are_not_cached(cached: TestClient, upstream: FakeUpstream) -> None:
    """Only successful answers are stored."""
    upstream.reply(Reply(500, {"error": {"message": "x", "type": "server_error"}}))
    assert post_variation(cached).status_code == 502
    upstream.script = lambda r: Reply(body=images_response(r))
    assert post_variation(cached).headers["x-gateway-cache"] == "MISS"


def test_entries_over_the_size_cap_are_not_stored(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """An answer larger than max_entry_bytes is relayed but not cached."""
    client = make_client({"cache": {"enabled": True, "max_entry_bytes": 100}})
    post_variation(client)
    assert post_variation(client).headers["x-gateway-cache"] == "MISS"


@pytest.mark.parametrize(("scope", "bob_hits"), [("user", False), ("team", True), ("global", True)])
def test_scope_decides_who_shares_entries(
    make_client: AppFactory, upstream: FakeUpstream, scope: str, bob_hits: bool
) -> None:
    """user scope keeps alice's entries from bob; team and global share them (carol: other team)."""
    client = make_client({"cache": {"enabled": True, "scope": scope}})
    post_variation(client, user="alice")
    assert (post_variation(client, user="bob").headers["x-gateway-cache"] == "HIT") is bob_hits
    carol = post_variation(client, user="carol").headers["x-gateway-cache"]
    assert (carol == "HIT") is (scope == "global")


def test_hits_consume_only_the_configured_units(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """A hit charges requests (hits_count_against) but no images; its headers say so."""
    rules = {
        "default": [
            {"unit": "requests", "limit": 10, "window": "day"},
            {"unit": "images", "limit": 3, "window": "day"},
        ]
    }
    client = make_client({"cache": {"enabled": True}, "quotas": rules})
    post_variation(client, fields={"n": "3"})
    hit = post_variation(client, fields={"n": "3"})
    assert hit.headers["x-gateway-cache"] == "HIT"
    assert (
        hit.headers["x-ratelimit-remaining-requests"],
        hit.headers["x-ratelimit-remaining-images"],
    ) == ("8", "0")
    miss = post_variation(client, fields={"n": "1"})
    assert_openai_error(miss, 429, "insufficient_quota", type_="insufficient_quota")
    assert miss.headers["x-gateway-cache"] == "MISS"


def test_hits_refused_when_their_units_are_exhausted(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """A hit still needs room in the units it consumes."""
    rules = {"default": [{"unit": "requests", "limit": 1, "window": "day"}]}
    client = make_client({"cache": {"enabled": True}, "quotas": rules})
    post_variation(client)
    response = post_variation(client)
    assert_openai_error(response, 429, "insufficient_quota", type_="insufficient_quota")
    assert response.headers["x-gateway-cache"] == "HIT"


def test_a_cache_that_fails_becomes_a_miss(make_client: AppFactory, upstream: FakeUpstream) -> None:
    """An unreachable cache Redis never fails a request."""
    client = make_client(
        {"cache": {"enabled": True}}, env={"CACHE_REDIS_URL": "redis://127.0.0.1:9/0"}
    )
    responses = [post_variation(client) for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.headers["x-gateway-cache"] for r in responses] == ["MISS", "MISS"]
    assert len(upstream.received) == 2


@pytest.mark.parametrize("keep", [0, 1], ids=["no-images", "one-of-three"])
def test_a_short_answer_is_relayed_but_never_stored(
    cached: TestClient, upstream: FakeUpstream, keep: int
) -> None:
    """An upstream answer with fewer images than asked reaches its caller, and the next
    identical request asks upstream again instead of getting the short answer for a day."""

    def short(received):  # type: ignore[no-untyped-def]
        body = images_response(received)
        body["data"] = body["data"][:keep]
        return Reply(body=body)

    upstream.script = short
    fields = {"n": "3", "response_format": "b64_json"}
    first = post_variation(cached, fields=fields)
    assert (first.status_code, len(first.json()["data"])) == (200, keep)
    assert post_variation(cached, fields=fields).headers["x-gateway-cache"] == "MISS"
    assert len(upstream.received) == 2


def test_a_coalesced_answer_without_images_costs_only_the_leaders_call(
    make_client: AppFactory, upstream: FakeUpstream
) -> None:
    """Callers coalesced onto a leader whose answer had no image are refunded in full; the
    leader keeps the request unit of the one call it made upstream."""
    from concurrent.futures import ThreadPoolExecutor

    rules = {"default": [{"unit": "requests", "limit": 100, "window": "day"}]}
    client = make_client({"cache": {"enabled": True}, "quotas": rules})
    upstream.reply(Reply(body={"created": 1, "data": []}, delay=0.5))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post_variation(client), range(4)))
    assert {a.headers["x-gateway-cache"] for a in answers} == {"MISS", "COALESCED"}
    assert len(upstream.received) == 1
    used = client.get("/v1/quota", headers=auth()).json()["rules"][0]["used"]
    assert used == 1


@pytest.mark.parametrize(
    ("enabled", "cache_control", "hashed"),
    [
        (False, None, False),
        (False, "no-cache", False),
        (True, "no-store", False),
        (True, None, True),
    ],
    ids=["cache-off", "cache-off-no-cache", "no-store", "cacheable"],
)
def test_an_upload_is_hashed_only_when_its_answer_may_be_cached(
    make_client: AppFactory,
    upstream: FakeUpstream,
    enabled: bool,
    cache_control: str | None,
    hashed: bool,
) -> None:
    """Through the app: with the cache off or `no-store` no byte is hashed; else the image's
    bytes are, once, by one hasher."""
    client = make_client({"cache": {"enabled": enabled}})
    hashers = CountingHashers()
    cache = ResponseCache(
        MemoryCacheStore(),
        CacheConfig(enabled=enabled),
        wait_seconds=1,
        lock_seconds=1,
        new_hasher=hashers,
    )
    services = client.app.state.services  # type: ignore[attr-defined]
    metering = dataclasses.replace(services.metering, cache=cache)
    client.app.state.services = dataclasses.replace(services, metering=metering)  # type: ignore[attr-defined]
    headers = {"Cache-Control": cache_control} if cache_control else None
    response = post_variation(client, headers=headers)
    assert response.status_code == 200
    assert len(upstream.received) == 1
    assert (hashers.made, hashers.fed) == ((1, len(DEFAULT_PNG)) if hashed else (0, 0))
