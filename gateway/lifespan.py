"""Everything a gateway process serves with, opened once in the app's lifespan and closed in
reverse order: one small opener per bundle of `services.Services`.

This is the one module that reads `Settings`: every part is given its own config section
or plain values. Tests swap the upstream transport and the quota clock here rather than
patching anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NamedTuple

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway import metrics
from gateway.admin.alerting import AlertOps
from gateway.admin.models import ModelAdmin
from gateway.admin.operations import AdminOps
from gateway.admin.state import RuntimeState
from gateway.admin.store import AdminStore, MemoryAdminStore, RedisAdminStore
from gateway.auth.authenticator import Authenticator, user_field
from gateway.auth.base import Identity, IdentitySource
from gateway.auth.jwks import JwksCache
from gateway.auth.keys import CONFIG_KEY_ID, ConfigKeys, RuntimeKeys
from gateway.auth.oidc import JwtVerifier
from gateway.auth.proxy_headers import TrustedHeaders
from gateway.auth.signin import ConsoleSignIn
from gateway.background import Detached
from gateway.cache import ResponseCache
from gateway.door import Door, InFlight, RoomCheck, Spending, length_checks
from gateway.notify.sender import Notifier
from gateway.params import ImageLimits
from gateway.quota.ledger import QuotaLedger
from gateway.quota.policy import configured_teams, rule_labels
from gateway.services import Alerting, Metering, Ops, Services, Upstreams
from gateway.settings.build import Settings
from gateway.settings.models import GPT_IMAGE_2, ModelCapabilities
from gateway.store.base import CacheStore, Clock, Store, StoreError
from gateway.store.connect import Connections
from gateway.store.memory import MemoryCacheStore, MemoryStore
from gateway.store.redis import RedisCacheStore, RedisStore
from gateway.store.topology import verify
from gateway.uploads import UploadBudget
from gateway.upstream import sandbox
from gateway.upstream.base import Upstream
from gateway.upstream.catalogue import ModelCatalogue, failover_reporter
from gateway.upstream.client import Account, build_client
from gateway.upstream.edits import EditsUpstream
from gateway.upstream.hosting import ImageHost
from gateway.upstream.image_api import ImageApiUpstream
from gateway.upstream.variations import VariationsUpstream
from gateway.upstream.watch import ModelWatch


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    spending: Sequence[Spending],
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    store_clock: Clock | None = None,
) -> AsyncIterator[Services]:
    """Open every bundle for the route table's `spending` endpoints; close all on exit.

    Each part closes once nothing opened after it needs it: calls that outlived their
    callers finish while the upstream client is open, then the ledger's last refunds land,
    then the stores close.
    """
    teams = configured_teams(settings.config)  # the only ones metrics and identities name
    rules = rule_labels(settings.config.quotas)
    metrics.precreate([e.name for e in spending], rules, teams, configured_models(settings))
    await verify_redis(settings)
    async with contextlib.AsyncExitStack() as stack:
        stores = await _open_stores(settings, stack, store_clock)
        runtime = await _open_runtime(settings, stack, stores.admin)
        notifier = await _open_notifier(settings, stack, runtime)
        upstream = await _open_upstream(settings, stack, stores.cache, upstream_transport, runtime)
        metering = _open_metering(settings, stack, stores, runtime, notifier)
        jwks = open_jwks(settings)
        if jwks is not None:
            stack.push_async_callback(jwks.close)
        door = _open_door(settings, jwks, runtime, teams, metering.room, spending)
        sign_in = _open_sign_in(settings, stack, jwks, teams)
        # Teams a runtime key may name: the config's, and the demo keys' (`make run`).
        key_teams = teams | {identity.team for identity in door.auth.identities()}
        config_users = {i.user for i in door.auth.identities() if i.key_id == CONFIG_KEY_ID}
        admin = AdminOps(runtime, key_teams, frozenset(config_users))
        ops = Ops(stores.state, teams, settings.metrics_token, settings.multiprocess_dir)
        alerting = Alerting(AlertOps(admin), notifier)
        models = ModelAdmin(admin, upstream.catalogue)
        yield Services(
            door, metering, upstream, admin, ops, _limits(settings), alerting, models, sign_in,
            settings.config.images,
        )  # fmt: skip


class Stores(NamedTuple):
    """The process's stores: quota and usage state, the cache (and hosted files), the admin
    plane's state."""

    state: Store
    cache: CacheStore
    admin: AdminStore


async def _open_stores(
    settings: Settings, stack: contextlib.AsyncExitStack, clock: Clock | None
) -> Stores:
    """The stores, one client per Redis URL, closed last (the shared clients once)."""
    redis = Connections()
    state = open_store(settings, redis, clock)
    stack.push_async_callback(state.close)
    with contextlib.suppress(StoreError):  # a store that is down now is /readyz's business
        await state.ping()  # also measures the Redis clock's offset before the first charge
    cache = open_cache_store(settings, redis)
    stack.push_async_callback(cache.close)
    admin = open_admin_store(settings, redis, state)
    stack.push_async_callback(admin.close)
    return Stores(state, cache, admin)


async def _open_runtime(
    settings: Settings, stack: contextlib.AsyncExitStack, store: AdminStore
) -> RuntimeState:
    """This replica's view of the admin plane: loaded now, then followed in the background;
    its last key uses are written before the admin store closes."""
    runtime = RuntimeState(store, settings.config.quotas)
    stack.push_async_callback(runtime.close)
    await runtime.start()
    return runtime


async def _open_notifier(
    settings: Settings, stack: contextlib.AsyncExitStack, runtime: RuntimeState
) -> Notifier:
    """The budget alerts' background sender; it closes after the ledger (whose last
    charges may still cross a threshold) and before the stores (it records its last
    outcomes)."""
    notifier = Notifier(runtime, settings.config.notifications, settings.config.quotas.timezone)
    stack.push_async_callback(notifier.close)
    await notifier.start()
    return notifier


async def _open_upstream(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    cache: CacheStore,
    transport: httpx.AsyncBaseTransport | None,
    runtime: RuntimeState,
) -> Upstreams:
    """The one upstream client, the model catalogue (the config's lists and prices with the
    admin plane's on top) and the watch that keeps it up to date, and the configured adapter;
    the image files the gateway serves itself live in the cache's store."""
    upstream = settings.config.upstream
    images = ImageHost(cache, settings.public_url)
    transport, base_url = _upstream_transport(settings, images, transport)
    client = await stack.enter_async_context(build_client(upstream, transport))
    catalogue = open_catalogue(settings, runtime)
    watch = ModelWatch(
        client, upstream_account(settings), base_url, catalogue, upstream.watch_seconds
    )
    watch.start()
    stack.push_async_callback(watch.close)
    adapter = open_adapter(settings, client, base_url, images, catalogue)
    image_api = open_image_api(settings, client, base_url, catalogue)
    return Upstreams((adapter, image_api), images, catalogue, upstream.watch_seconds, image_api)


def configured_models(settings: Settings) -> tuple[str, ...]:
    """The models of the config's lists (`upstream.edits`: the edits adapter's, and the
    generations and edits endpoints')."""
    edits = settings.config.upstream.edits
    return () if edits is None else edits.model_list


def open_image_api(
    settings: Settings, client: httpx.AsyncClient, base_url: str, catalogue: ModelCatalogue
) -> ImageApiUpstream:
    """The generations and edits adapter, over the catalogue's models; what each model
    takes is the config's `upstream.edits.capabilities` (else gpt-image-2's)."""
    edits = settings.config.upstream.edits
    named = edits.capabilities if edits is not None else {}

    def capabilities(model: str) -> ModelCapabilities:
        return named.get(model, GPT_IMAGE_2)

    account = upstream_account(settings)
    return ImageApiUpstream(client, account, base_url, catalogue, capabilities)


def open_catalogue(settings: Settings, runtime: RuntimeState) -> ModelCatalogue:
    """The model catalogue: the config's lists and prices, the admin plane's on top; a
    failover is logged, counted and audited."""
    edits = settings.config.upstream.edits
    lists = {"edits": configured_models(settings)} if configured_models(settings) else {}
    return ModelCatalogue(
        lists,
        edits.prices if edits is not None else {},
        runtime=runtime.models,
        on_failover=failover_reporter(runtime.record),
    )


def _open_metering(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    stores: Stores,
    runtime: RuntimeState,
    notifier: Notifier,
) -> Metering:
    """The pipeline's bundle: the ledger (the configured rules with runtime overrides), the
    cache, and the calls that outlive their callers, which finish before the ledger closes."""
    config = settings.config
    ledger = QuotaLedger(
        config.quotas,
        stores.state,
        fail_open=config.store.on_error == "fail_open",
        upstream_timeout_seconds=config.upstream.timeout_seconds,
        policy=runtime.policy,
        on_crossing=notifier.crossed,
    )
    stack.push_async_callback(ledger.close)  # refunds of cancelled requests land first
    background = Detached()
    stack.push_async_callback(background.close, config.limits.shutdown_grace_seconds)
    hits = config.cache.hits_count_against
    marks = {"x-gateway-upstream": "sandbox"} if config.upstream.is_sandbox else {}
    cache = open_cache(settings, stores.cache)
    return Metering(
        ledger, cache, background, RoomCheck(ledger, hits), open_user_field(settings),
        hits, config.upstream.on_timeout, marks,
    )  # fmt: skip


def _open_door(
    settings: Settings,
    jwks: JwksCache | None,
    runtime: RuntimeState,
    teams: frozenset[str],
    room: RoomCheck,
    spending: Sequence[Spending],
) -> Door:
    """The door: who is calling (by the IdP's keys, if SSO is on), their quota room, a place
    in flight, the upload lease, each spending endpoint's length bound."""
    return Door(
        build_authenticator(settings, jwks, teams, runtime),
        room,
        InFlight(settings.config.limits.max_concurrent_requests),
        open_upload_budget(settings),
        length_checks(spending, settings),
    )


def _open_sign_in(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    jwks: JwksCache | None,
    teams: frozenset[str],
) -> ConsoleSignIn | None:
    """The console's SSO sign-in, when `identity.jwt.console` is set: its tokens are
    verified by the same rules and keys as every SSO bearer."""
    config = settings.config.identity.jwt
    if config is None or config.console is None or jwks is None:
        return None
    secret = settings.console_client_secret
    sign_in = ConsoleSignIn(
        config.console,
        config.issuer,
        JwtVerifier(config, jwks, teams=teams),
        secret.get_secret_value() if secret else None,
    )
    stack.push_async_callback(sign_in.close)
    return sign_in


def _limits(settings: Settings) -> ImageLimits:
    """What an image request may ask: the configured models, image side and body time."""
    limits = settings.config.limits
    models = settings.config.upstream.models
    return ImageLimits(models, limits.max_image_side, limits.body_timeout_seconds)


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


def open_store(settings: Settings, redis: Connections, clock: Clock | None = None) -> Store:
    """Redis when a URL is configured, else the in-process store.

    `clock` replaces the store's own (Redis's) for deciding quota windows: tests only.
    """
    if settings.redis_url is None:
        return MemoryStore(clock) if clock else MemoryStore()
    client = redis.client(settings.redis_url.get_secret_value(), settings.redis_options)
    return RedisStore(client, clock)


def open_cache_store(settings: Settings, redis: Connections) -> CacheStore:
    """The cache's own Redis (default: the store's, sharing its client), else process memory."""
    url = settings.cache_redis_url
    if url is None:
        return MemoryCacheStore()
    return RedisCacheStore(redis.client(url.get_secret_value(), settings.cache_redis_options))


def open_admin_store(settings: Settings, redis: Connections, store: Store) -> AdminStore:
    """The admin plane's state: in the state Redis (on the store's own client), else beside
    the in-process store."""
    if settings.redis_url is None:
        assert isinstance(store, MemoryStore)
        return MemoryAdminStore(lambda: store.books)
    client = redis.client(settings.redis_url.get_secret_value(), settings.redis_options)
    # The admin plane uses commands beyond the stores' protocol (hashes, a stream, pub/sub):
    # it takes the concrete client built for the URL's topology.
    assert isinstance(client, Redis | RedisCluster)
    return RedisAdminStore(client)


def _upstream_transport(
    settings: Settings, images: ImageHost, transport: httpx.AsyncBaseTransport | None
) -> tuple[httpx.AsyncBaseTransport | None, str]:
    """The transport (tests', the sandbox's, else the client's own) and the base URL."""
    upstream = settings.config.upstream
    if transport is not None or not upstream.is_sandbox:
        return transport, sandbox.BASE_URL if upstream.is_sandbox else upstream.base_url
    models = (*upstream.models, *configured_models(settings))
    app = sandbox.create_sandbox_app(
        images,
        max_side=settings.config.limits.max_image_side,
        models=models,
        switches=upstream.sandbox,
    )
    return httpx.ASGITransport(app=app), sandbox.BASE_URL


def upstream_account(settings: Settings) -> Account:
    """The company's credentials for the upstream."""
    upstream, key = settings.config.upstream, settings.upstream_api_key
    api_key = key.get_secret_value() if key else ""
    return Account(api_key, upstream.organization, upstream.project)


def open_adapter(
    settings: Settings,
    client: httpx.AsyncClient,
    base_url: str,
    images: ImageHost,
    catalogue: ModelCatalogue,
) -> Upstream:
    """The configured adapter: forward variations as they are, or fulfil them via edits."""
    upstream, account = settings.config.upstream, upstream_account(settings)
    if upstream.adapter == "edits":
        if upstream.edits is None:
            raise ValueError("the edits adapter needs upstream.edits")
        return EditsUpstream(client, account, base_url, images, upstream.edits, catalogue)
    return VariationsUpstream(client, account, base_url, settings.config.prices)


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


def open_user_field(settings: Settings) -> Callable[[Identity], str]:
    """The `user` sent upstream: the caller's name (`plain`), else its keyed pseudonym."""
    if settings.config.identity.user_field == "plain":
        return user_field(None)
    return user_field(settings.user_secret.get_secret_value())


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
    settings: Settings, jwks: JwksCache | None, teams: frozenset[str], runtime: RuntimeState
) -> Authenticator:
    """The identity sources in the order they are asked: trusted headers (when configured),
    the config's keys (and the demo keys), keys issued at run time, SSO tokens (when
    configured); teams from tokens and headers must be among `teams`."""
    identity = settings.config.identity
    sources: list[IdentitySource] = []
    if identity.trusted_header is not None:
        sources.append(TrustedHeaders(identity.trusted_header, teams))
    demo_keys = (_revealed(settings.demo_key), _revealed(settings.demo_admin_key))
    sources += [ConfigKeys(settings.config.principals, *demo_keys), RuntimeKeys(runtime)]
    if identity.jwt is not None and jwks is not None:
        sources.append(JwtVerifier(identity.jwt, jwks, teams=teams))
    return Authenticator(sources)


def _revealed(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


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
