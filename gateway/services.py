"""The gateway's long-lived parts, opened once per process in the app's lifespan.

`open_services` builds every component from `Settings` and closes them in reverse order;
the endpoints read them from `request.app.state.services`. Tests swap the upstream
transport here rather than patching anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from gateway import metrics
from gateway.admin_ops import AdminOps
from gateway.admin_state import RuntimeState
from gateway.admin_store import AdminStore, MemoryAdminStore, RedisAdminStore
from gateway.admission import Admission, Doorstep, RoomCheck
from gateway.auth.authenticator import Authenticator, KeyAuthenticator, user_field
from gateway.auth.identity import Identity
from gateway.auth.jwks import JwksCache
from gateway.auth.oidc import JwtVerifier
from gateway.auth.proxy_headers import TrustedHeaders
from gateway.background import Detached
from gateway.budget import ImageShelf, UploadBudget
from gateway.cache import ResponseCache, entry_key
from gateway.container import Services
from gateway.ledger import QuotaLedger
from gateway.policy import configured_teams, rule_labels
from gateway.settings import Settings
from gateway.store.base import CacheStore, Clock, Store, StoreError
from gateway.store.connect import Connections, connect
from gateway.store.memory import MemoryCacheStore, MemoryStore
from gateway.store.redis import RedisCacheStore, RedisStore
from gateway.store.topology import verify
from gateway.upstream import sandbox
from gateway.upstream.base import Upstream
from gateway.upstream.client import Account, build_client
from gateway.upstream.edits import EditsUpstream
from gateway.upstream.hosting import ImageHost
from gateway.upstream.variations import VariationsUpstream


def open_store(settings: Settings, redis: Connections, clock: Clock | None = None) -> Store:
    """Redis when a URL is configured, else the in-process store.

    `clock` replaces the store's own (Redis's) for deciding quota windows: tests only.
    """
    if settings.redis_url is None:
        return MemoryStore(clock) if clock else MemoryStore()
    client = redis.client(settings.redis_url.get_secret_value(), settings.redis_options)
    return RedisStore(client, clock)


async def verify_redis(settings: Settings) -> None:
    """Refuse to start, naming the problem, when a configured Redis is not the topology its
    URL says (raises `TopologyError`); one that does not answer yet is left to /readyz."""
    targets = {
        (url.get_secret_value(), options)
        for url, options in (
            (settings.redis_url, settings.redis_options),
            (settings.cache_redis_url, settings.cache_redis_options),
        )
        if url is not None
    }
    for url, options in targets:
        await verify(url, options)


def open_cache_store(settings: Settings, redis: Connections) -> CacheStore:
    """The cache's own Redis (default: the store's, sharing its client), else process memory."""
    url = settings.cache_redis_url
    if url is None:
        return MemoryCacheStore()
    return RedisCacheStore(redis.client(url.get_secret_value(), settings.cache_redis_options))


def open_cache(settings: Settings, store: CacheStore) -> ResponseCache:
    """The answer cache over `store`, with coalescing bounded by the upstream timeout."""
    config = settings.config
    # A leader's lock outlives its upstream call; waiters wait as long, unless told otherwise.
    lock_seconds = config.upstream.timeout_seconds + 10
    return ResponseCache(
        store,
        config.cache,
        wait_seconds=config.cache.coalesce_wait_seconds or lock_seconds,
        lock_seconds=lock_seconds,
        on_error=metrics.CACHE_REQUESTS.labels("error").inc,
    )


def open_upload_budget(settings: Settings) -> UploadBudget:
    """The bytes of uploads this process may hold at once, and uploads per caller; a request
    waits for room at most half the time it is given to send its body, so that a wait
    too long ends in a retryable 503, not in the body's own timeout (400)."""
    limits = settings.config.limits
    return UploadBudget(
        limits.upload_buffer_mb * 2**20,
        limits.body_timeout_seconds / 2,
        per_caller=limits.max_uploads_per_caller,
    )


def open_jwks(settings: Settings) -> JwksCache | None:
    """The IdP's key cache when SSO tokens are configured (nothing is fetched yet)."""
    config = settings.config.identity.jwt
    if config is None:
        return None
    return JwksCache(
        config.jwks_url,
        algorithms=config.algorithms,
        cache_seconds=config.jwks_cache_seconds,
        min_refresh_seconds=config.jwks_min_refresh_seconds,
        timeout_seconds=config.jwks_timeout_seconds,
    )


def build_authenticator(
    settings: Settings,
    jwks: JwksCache | None,
    teams: frozenset[str],
    runtime: RuntimeState | None = None,
) -> Authenticator:
    """API keys (and the demo key, and keys issued at run time), plus SSO tokens and
    trusted headers when configured; teams from tokens and headers must be among `teams`."""
    identity = settings.config.identity
    demo_key = settings.demo_key.get_secret_value() if settings.demo_key else None
    demo_admin = settings.demo_admin_key.get_secret_value() if settings.demo_admin_key else None
    jwt = identity.jwt
    headers = identity.trusted_header
    return Authenticator(
        KeyAuthenticator(settings.config.principals, demo_key, demo_admin),
        jwt=JwtVerifier(jwt, jwks, teams=teams) if jwt and jwks is not None else None,
        headers=TrustedHeaders(headers, teams) if headers else None,
        runtime_keys=runtime.lookup if runtime is not None else None,
        runtime_identities=runtime.identities if runtime is not None else None,
    )


def open_admin_store(settings: Settings, store: Store) -> AdminStore:
    """The admin plane's state: in the state Redis, else beside the in-process store."""
    if settings.redis_url is None:
        assert isinstance(store, MemoryStore)
        return MemoryAdminStore(lambda: store.books)
    client = connect(settings.redis_url.get_secret_value(), settings.redis_options)
    # The admin plane uses commands beyond the stores' protocol (hashes, a stream, pub/sub):
    # it takes the concrete client connect() built for the URL's topology.
    assert isinstance(client, redis.Redis | RedisCluster)
    return RedisAdminStore(client)


def _upstream_transport(
    settings: Settings, images: ImageHost, transport: httpx.AsyncBaseTransport | None
) -> tuple[httpx.AsyncBaseTransport | None, str]:
    upstream = settings.config.upstream
    if transport is not None or not upstream.is_sandbox:
        return transport, sandbox.BASE_URL if upstream.is_sandbox else upstream.base_url
    app = sandbox.create_sandbox_app(
        images, max_side=settings.config.limits.max_image_side, models=upstream.models
    )
    return httpx.ASGITransport(app=app), sandbox.BASE_URL


def open_user_field(settings: Settings) -> Callable[[Identity], str]:
    """The `user` sent upstream: the caller's name (`plain`), else its keyed pseudonym."""
    if settings.config.identity.user_field == "plain":
        return user_field(None)
    return user_field(settings.user_secret.get_secret_value())


def open_ledger(
    settings: Settings, store: Store, upstream: Upstream, runtime: RuntimeState
) -> QuotaLedger:
    """The quota ledger: the configured rules with runtime overrides, priced by the adapter."""
    config = settings.config
    return QuotaLedger(
        config.quotas,
        store,
        image_price=upstream.image_price,
        fail_open=config.store.on_error == "fail_open",
        upstream_timeout_seconds=config.upstream.timeout_seconds,
        policy=runtime.policy,
    )


def open_upstream(
    settings: Settings, client: httpx.AsyncClient, base_url: str, images: ImageHost
) -> Upstream:
    """The configured adapter: forward variations as they are, or fulfil them via edits."""
    upstream = settings.config.upstream
    key = settings.upstream_api_key
    account = Account(
        key.get_secret_value() if key else "", upstream.organization, upstream.project
    )
    if upstream.adapter == "edits":
        if upstream.edits is None:
            raise ValueError("the edits adapter needs upstream.edits")
        return EditsUpstream(client, account, base_url, images, upstream.edits)
    return VariationsUpstream(client, account, base_url, settings.config.prices)


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    store_clock: Clock | None = None,
) -> AsyncIterator[Services]:
    """Open the store, the cache, the IdP's key cache and the upstream client; close all on exit.

    The JWKS client is its own (short timeouts, never the upstream's transport, which the
    sandbox and tests replace).
    """
    teams = configured_teams(settings.config)  # the only ones metrics and identities name
    metrics.precreate(rule_labels(settings.config.quotas), teams)
    await verify_redis(settings)
    redis = Connections()
    store = open_store(settings, redis, store_clock)
    with contextlib.suppress(StoreError):  # a store that is down now is /readyz's business
        await store.ping()  # also measures the Redis clock's offset before the first charge
    cache_store = open_cache_store(settings, redis)
    cache = open_cache(settings, cache_store)
    jwks = open_jwks(settings)
    images = ImageHost(cache_store, settings.public_url)
    ledger: QuotaLedger | None = None
    background = Detached()
    runtime = RuntimeState(open_admin_store(settings, store), settings.config.quotas)
    transport, base_url = _upstream_transport(settings, images, upstream_transport)
    cache_config = settings.config.cache
    try:
        await runtime.start()
        async with build_client(settings.config.upstream, transport) as client:
            upstream = open_upstream(settings, client, base_url, images)
            ledger = open_ledger(settings, store, upstream, runtime)
            auth = build_authenticator(settings, jwks, teams, runtime)
            # Teams a runtime key may name: the config's, and the demo keys' (`make run`).
            key_teams = teams | {identity.team for identity in auth.identities()}
            try:
                yield Services(
                    auth=auth,
                    store=store,
                    images=images,
                    ledger=ledger,
                    cache=cache,
                    upstream=upstream,
                    upstream_headers={
                        **upstream.headers,
                        **(
                            {"x-gateway-upstream": "sandbox"}
                            if settings.config.upstream.is_sandbox
                            else {}
                        ),
                    },
                    admission=Admission(settings.config.limits.max_concurrent_requests),
                    uploads=open_upload_budget(settings),
                    background=background,
                    admin=AdminOps(runtime, key_teams),
                    doorstep=Doorstep(),
                    room=RoomCheck(ledger, settings.config.cache.hits_count_against),
                    shelf=ImageShelf(),
                    cache_key=partial(entry_key, cache_config, upstream_id=upstream.identity),
                    user_field=open_user_field(settings),
                    hits_count_against=cache_config.hits_count_against,
                    on_timeout=settings.config.upstream.on_timeout,
                    models=settings.config.upstream.models,
                    max_image_side=settings.config.limits.max_image_side,
                    body_timeout_seconds=settings.config.limits.body_timeout_seconds,
                    teams=teams,
                    metrics_token=settings.metrics_token,
                    multiprocess_dir=settings.multiprocess_dir,
                )
            finally:  # calls whose callers left finish (or are cancelled) while the client is open
                await background.close(settings.config.limits.shutdown_grace_seconds)
    finally:
        await runtime.close()
        await runtime.store.close()
        if ledger is not None:  # refunds of cancelled requests land before the store closes
            await ledger.close()
        if jwks is not None:
            await jwks.close()
        await cache.close()
        await store.close()
