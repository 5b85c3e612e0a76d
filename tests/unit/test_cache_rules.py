"""Pure cache rules: Cache-Control modes, URL-aware TTLs, keys."""

from __future__ import annotations

import orjson
import pytest
from support.hashers import CountingHashers

from gateway.auth.base import Identity
from gateway.cache import (
    URL_MARGIN_SECONDS,
    ResponseCache,
    cache_mode,
    entry_key,
    entry_ttl,
    input_hasher,
)
from gateway.settings.config import CacheConfig
from gateway.store.memory import MemoryCacheStore
from gateway.upstream.base import VariationRequest

NOW = 1_795_300_000.0


@pytest.mark.parametrize(
    ("header", "mode"),
    [
        (None, "use"),
        ("", "use"),
        ("max-age=0", "use"),
        ("no-cache", "refresh"),
        ("No-Cache, max-age=0", "refresh"),
        ("no-store", "bypass"),
        ("no-cache, no-store", "bypass"),
    ],
)
def test_cache_control_modes(header: str | None, mode: str) -> None:
    """no-store wins over no-cache; anything else uses the cache."""
    assert cache_mode(header) == mode


def _body(*urls: str, created: float = NOW) -> bytes:
    return orjson.dumps({"created": created, "data": [{"url": u} for u in urls]})


def test_url_ttl_follows_the_earliest_se_minus_margin() -> None:
    """The entry dies before the first of its URLs does."""
    body = _body(
        "https://a/x.png?se=2026-11-21T22%3A43%3A20Z&sig=1",
        "https://a/y.png?se=2026-11-21T23%3A00%3A00Z",
    )
    expiry = NOW + 1000  # 22:43:20Z
    assert entry_ttl(body, "url", 86400, NOW) == int(expiry - NOW - URL_MARGIN_SECONDS)


def test_url_ttl_without_se_uses_created_plus_an_hour() -> None:
    """Without `se`, URLs are taken to expire 60 minutes after `created`."""
    assert entry_ttl(_body("https://a/x.png"), "url", 86400, NOW) == 3600 - URL_MARGIN_SECONDS
    assert entry_ttl(_body("https://a/x.png"), "url", 600, NOW) == 600


def test_expired_or_unreadable_url_answers_are_not_cached() -> None:
    """URLs already past their margin, or a body that is not an ImagesResponse, get TTL 0."""
    assert entry_ttl(_body("https://a/x.png", created=NOW - 3500), "url", 86400, NOW) == 0
    assert entry_ttl(b"not json", "url", 86400, NOW) == 0


def test_b64_answers_use_the_configured_ttl() -> None:
    """b64_json answers do not expire on their own."""
    assert entry_ttl(b"{}", "b64_json", 1234, NOW) == 1234


def _request(**changes: object) -> VariationRequest:
    values: dict[str, object] = {
        "image": b"png",
        "image_digest": "blake3:" + "ab" * 32,
        "model": "dall-e-2",
        "n": 1,
        "size": "256x256",
        "response_format": "url",
        **changes,
    }
    return VariationRequest(**values)  # type: ignore[arg-type]


def test_keys_differ_by_parameter_scope_and_upstream() -> None:
    """Every parameter of the request (its key material), the scope's subject and the
    upstream are part of the key."""
    alice, bob = Identity("alice", "vision"), Identity("bob", "vision")
    config = CacheConfig(scope="user")
    base = entry_key(config, alice, _request().key_material(), "variations@x")
    assert base.startswith("gw:v1:cache:{") and base.endswith("}")
    others = {
        entry_key(config, alice, _request(n=2).key_material(), "variations@x"),
        entry_key(config, alice, _request(model="other").key_material(), "variations@x"),
        entry_key(
            config,
            alice,
            _request(image_digest="blake3:" + "cd" * 32).key_material(),
            "variations@x",
        ),
        entry_key(config, bob, _request().key_material(), "variations@x"),
        entry_key(config, alice, _request().key_material(), "edits@x"),
    }
    assert base not in others and len(others) == 5
    team = CacheConfig(scope="team")
    assert entry_key(team, alice, _request().key_material(), "u") == entry_key(
        team, bob, _request().key_material(), "u"
    )


def _cache(enabled: bool, hashers: CountingHashers) -> ResponseCache:
    config = CacheConfig(enabled=enabled)
    return ResponseCache(
        MemoryCacheStore(), config, wait_seconds=1, lock_seconds=1, new_hasher=hashers
    )


@pytest.mark.parametrize("cache_control", [None, "no-cache", "max-age=0", "no-store"])
def test_cache_off_bypasses_and_hashes_nothing(cache_control: str | None) -> None:
    """With the cache off every request bypasses it, whatever it asks, and gets no hasher."""
    hashers = CountingHashers()
    cache = _cache(False, hashers)
    mode = cache.mode(cache_control)
    assert mode == "bypass"
    assert cache.hasher(mode) is None
    assert hashers.made == 0


@pytest.mark.parametrize(
    ("cache_control", "hashed"),
    [(None, True), ("no-cache", True), ("no-store", False), ("No-Store, max-age=0", False)],
)
def test_cache_on_hashes_only_what_it_may_look_up_or_store(
    cache_control: str | None, hashed: bool
) -> None:
    """With the cache on, a request is hashed unless `no-store` keeps its answer out of it."""
    hashers = CountingHashers()
    cache = _cache(True, hashers)
    hasher = cache.hasher(cache.mode(cache_control))
    assert (hasher is not None) is hashed
    assert hashers.made == int(hashed)


def test_the_input_hash_is_blake3_and_named_in_the_digest() -> None:
    """The default hasher is BLAKE3, and its name is what the digest (and key) carries."""
    hasher = input_hasher()
    hasher.update(b"abc")
    assert hasher.name == "blake3"
    assert hasher.hexdigest() == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
