"""The JWKS cache against a real JWKS on loopback, with an injected clock: coalesced fetches,
bounded refreshes, stale keys served through an outage, keys bound to one algorithm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from support.fake_idp import FakeIdP, SigningKey

from gateway.auth.jwks import JwksCache, JwksUnavailable, UnknownKey, UnusableKey

T = TypeVar("T")
Keys = dict[str, SigningKey]
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(
    idp: FakeIdP,
    clock: Clock,
    body: Callable[[JwksCache], Awaitable[T]],
    transport: httpx.AsyncBaseTransport | None = None,
) -> T:
    """Run `body` with a fresh cache of `idp`'s JWKS (300 s cache, 30 s minimum refresh),
    fetching through `transport` if one is given."""

    async def main() -> T:
        cache = JwksCache(
            idp.jwks_url,
            algorithms=ALGORITHMS,
            cache_seconds=300,
            min_refresh_seconds=30,
            timeout_seconds=2,
            clock=clock,
            transport=transport,
        )
        try:
            return await body(cache)
        finally:
            await cache.close()

    return asyncio.run(main())


async def settle() -> None:
    """Let a background refresh finish (a loopback fetch takes milliseconds)."""
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not any(task is not asyncio.current_task() for task in asyncio.all_tasks()):
            return


def test_concurrent_lookups_share_one_fetch(idp: FakeIdP) -> None:
    """Twenty lookups at once on a cold cache, known kids or not, make one fetch."""
    idp.delay = 0.2

    async def body(cache: JwksCache) -> list[Any]:
        lookups = [cache.key("rsa-1", "RS256") for _ in range(10)]
        lookups += [cache.key(f"made-up-{i}", "RS256") for i in range(10)]
        return await asyncio.gather(*lookups, return_exceptions=True)

    results = run(idp, Clock(), body)
    assert all(isinstance(r, jwt.PyJWK) for r in results[:10])
    assert all(isinstance(r, UnknownKey) for r in results[10:])
    assert idp.fetches == 1


def test_the_keys_are_fetched_through_a_given_transport(idp: FakeIdP) -> None:
    """A JwksCache given a transport fetches the JWKS through it, not a client of its own."""
    seen: list[str] = []

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return await super().handle_async_request(request)

    async def body(cache: JwksCache) -> jwt.PyJWK:
        return await cache.key("rsa-1", "RS256")

    assert isinstance(run(idp, Clock(), body, Counting()), jwt.PyJWK)
    assert seen == [idp.jwks_url]
    assert idp.fetches == 1


def test_unknown_kid_refetches_once_per_interval(idp: FakeIdP, signing_keys: Keys) -> None:
    """Unknown kids refetch at most once per minimum interval, then again after it."""
    clock = Clock()

    async def body(cache: JwksCache) -> None:
        await cache.key("rsa-1", "RS256")
        idp.publish(signing_keys["rsa-1"], signing_keys["rsa-2"], signing_keys["rsa-3"])
        await cache.key("rsa-2", "RS256")  # rotation: a refresh
        assert idp.fetches == 2
        clock.advance(29)
        idp.publish(signing_keys["rsa-1"], signing_keys["ec-1"])
        with pytest.raises(UnknownKey):
            await cache.key("ec-1", "ES256")
        assert idp.fetches == 2
        await cache.key("rsa-3", "RS256")  # still cached from the last fetch
        clock.advance(1)
        await cache.key("ec-1", "ES256")
        assert idp.fetches == 3
        with pytest.raises(UnknownKey):
            await cache.key("rsa-3", "RS256")  # gone from the IdP, so gone here

    run(idp, clock, body)


def test_stale_key_is_served_while_refreshing(idp: FakeIdP, signing_keys: Keys) -> None:
    """After the cache time a known key is answered at once; the refresh runs behind it."""
    clock = Clock()

    async def body(cache: JwksCache) -> None:
        await cache.key("rsa-1", "RS256")
        clock.advance(300)
        idp.publish(signing_keys["rsa-2"])
        idp.gate.clear()  # the refresh cannot complete until the gate opens
        assert (await cache.key("rsa-1", "RS256")).key_id == "rsa-1"
        idp.gate.set()
        await settle()
        assert idp.fetches == 2
        await cache.key("rsa-2", "RS256")
        assert idp.fetches == 2

    run(idp, clock, body)


def test_outage_keeps_cached_keys_and_retries_at_the_minimum_interval(
    idp: FakeIdP, signing_keys: Keys
) -> None:
    """With the IdP failing, cached keys outlive the cache time; retries are spaced out."""
    clock = Clock()

    async def body(cache: JwksCache) -> None:
        await cache.key("ec-1", "ES256")
        idp.status = 503
        clock.advance(600)
        for _ in range(5):
            await cache.key("ec-1", "ES256")
            await settle()
        assert idp.fetches == 2
        with pytest.raises(JwksUnavailable, match="HTTP 503"):
            await cache.key("rsa-2", "RS256")  # its one lookup refresh fails too
        assert idp.fetches == 3
        with pytest.raises(JwksUnavailable):
            await cache.key("rsa-2", "RS256")
        assert idp.fetches == 3
        clock.advance(30)
        idp.status = 200
        idp.publish(signing_keys["ec-1"], signing_keys["rsa-2"])
        await cache.key("rsa-2", "RS256")
        assert idp.fetches == 4

    run(idp, clock, body)


def test_unreachable_idp_with_nothing_cached_is_unavailable(idp: FakeIdP) -> None:
    """An IdP that never answered: the lookup fails as unavailable, naming the cause."""
    idp.stop()
    with pytest.raises(JwksUnavailable, match="unreachable"):
        run(idp, Clock(), lambda cache: cache.key("rsa-1", "RS256"))


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ((302, {"location": "https://evil.example/keys"}, b""), "HTTP 302"),
        ((200, {}, b"<html>sign in</html>"), "not JSON"),
        ((200, {}, b'{"keys": [' + b'{"kty": "oct"},' * 80_000 + b"{}]}"), "larger than 1 MiB"),
    ],
    ids=["redirect", "html", "oversized"],
)
def test_a_jwks_url_answering_nonsense_is_unavailable(
    idp: FakeIdP, reply: tuple[int, dict[str, str], bytes], says: str
) -> None:
    """Redirects are not followed, and a non-JSON or oversized document is not a key set."""
    idp.override = reply
    with pytest.raises(JwksUnavailable, match=says):
        run(idp, Clock(), lambda cache: cache.key("rsa-1", "RS256"))


@pytest.mark.parametrize(
    ("kid", "algorithm", "fits"),
    [
        ("rsa-1", "RS256", True),
        ("rsa-1", "PS256", False),  # the JWK says alg RS256
        ("rsa-noalg", "PS256", True),  # no alg in the JWK: bound to the token's, if allowed
        ("rsa-noalg", "ES256", False),  # an RSA key cannot verify ES256
        ("rsa-noalg", "RS384", False),  # not a configured algorithm
        ("ec-1", "RS256", False),
        ("ed-1", "EdDSA", True),
    ],
)
def test_key_is_bound_to_one_algorithm(
    idp: FakeIdP, signing_keys: Keys, kid: str, algorithm: str, fits: bool
) -> None:
    """A key verifies only its own algorithm (or the token's, if the JWK names none)."""
    idp.publish(signing_keys["rsa-1"], signing_keys["rsa-noalg"], signing_keys["ec-1"])
    idp.publish(*idp.published, signing_keys["ed-1"])

    async def body(cache: JwksCache) -> str:
        return (await cache.key(kid, algorithm)).algorithm_name

    if fits:
        assert run(idp, Clock(), body) == algorithm
    else:
        with pytest.raises(UnusableKey):
            run(idp, Clock(), body)


def test_close_cancels_a_refresh_in_flight(idp: FakeIdP) -> None:
    """Closing the cache while a fetch hangs ends the fetch and the lookups waiting on it."""
    idp.gate.clear()

    async def body(cache: JwksCache) -> None:
        lookup = asyncio.ensure_future(cache.key("rsa-1", "RS256"))
        await asyncio.sleep(0.05)
        await cache.close()
        with pytest.raises(asyncio.CancelledError):
            await lookup

    run(idp, Clock(), body)


def test_a_jwks_url_with_credentials_is_logged_without_them(
    idp: FakeIdP, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed fetch logs the JWKS URL without its user:password@ part."""
    idp.stop()
    url = idp.jwks_url.replace("http://", "http://svc:hunter2pass@")

    async def main() -> None:
        cache = JwksCache(
            url, algorithms=ALGORITHMS, cache_seconds=300, min_refresh_seconds=30, timeout_seconds=2
        )
        try:
            with pytest.raises(JwksUnavailable):
                await cache.key("rsa-1", "RS256")
        finally:
            await cache.close()

    asyncio.run(main())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "JWKS fetch from" in logged
    assert "hunter2pass" not in logged and "svc:" not in logged
