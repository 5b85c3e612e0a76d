"""The one metered pipeline, for every endpoint that spends quota, top to bottom:

    probe the cache (on a miss, the bid to lead) -> reserve quota -> produce (coalesced:
    the upstream call) -> store -> settle quota -> headers -> relay

An endpoint hands it a `Metered`: who asks, what the request costs in each unit, which
upstream adapter answers it and what it asks of it (the request record names its answer
in the cache); and its own bundle of services, `Metering`. Everything that can refuse a
request ran before it (the door, the endpoint's validation).

Once a request has been sent upstream the company may be billed, so the charge follows the
upstream, not the caller:

- a request never sent (the caller hung up while waiting on a coalesced call, the upstream
  could not be connected to), or sent only to models the upstream no longer has, gets
  everything back, the request unit too;
- after it is sent, hanging up does not cancel the call: it finishes in the background
  (`Detached`), is settled as delivered and cached, so the caller's retry is a hit;
- the upstream saying it produced nothing (an error status) keeps the request unit and
  gives back images and usd; an answer lost after sending (a timeout, a reset, a shutdown)
  keeps the charge unless `upstream.on_timeout` is `refund`;
- an answer in hand is always settled as delivered, so a cancellation can never leave a
  stored answer with a refunded charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway import metrics, tracing
from gateway.auth.base import Identity
from gateway.cache import Cached, CacheResult, Mode, Probe
from gateway.errors import GatewayError, UpstreamError
from gateway.quota.counters import UNIT_SCALE
from gateway.quota.headers import quota_headers
from gateway.quota.ledger import Reservation
from gateway.services import Metering
from gateway.upstream.base import Upstream, UpstreamAnswer, UpstreamRequest
from gateway.vocabulary import Unit


@dataclass(frozen=True)
class Metered:
    """One metered request, as the endpoint describes it to the pipeline."""

    identity: Identity
    cost: Mapping[Unit, int]  # what it reserves in each unit, before the call
    upstream: Upstream  # the adapter that produces its answer
    # What it asks: its images (a shorter answer is settled for what came and never cached),
    # their format (the cache's TTL rules), what names its answer, and `sent()` to let go
    # of its input once it is not needed.
    request: UpstreamRequest
    # Held while waiting on a coalesced leader: the input shrunk to the waiters' one copy.
    waiting: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    # False: the answer is never looked up, stored or coalesced (a generation nobody opted
    # into caching), whatever the caller's Cache-Control says.
    cacheable: bool = True
    spent_on: tuple[str, str] = ("", "")  # the endpoint and the model, in the books


async def serve(request: Request, metering: Metering, metered: Metered) -> Response:
    """The answer from the cache, a coalesced leader or the upstream, quota settled."""
    cache = metering.cache
    mode = cache.mode(request.headers.get("cache-control")) if metered.cacheable else "bypass"
    material = metered.request.key_material()
    key = cache.key(metered.identity, material, metered.upstream.identity)
    tracing.note(model=metered.request.model)
    probe = await cache.probe(key) if mode == "use" else None  # a miss may lead
    if probe is not None and probe.answer is not None:
        metered.request.sent()  # answered from the cache: the input is not needed
        reservation = await reserve(metering, metered, "HIT", metering.hits_count_against)
        return _relay(request, metering, metered, Cached(probe.answer, "HIT"), reservation)
    waiting = probe is not None and probe.leading is False  # on another's call
    with metered.waiting() if waiting else contextlib.nullcontext():
        try:
            reservation = await reserve(metering, metered, _missed(mode))
        except BaseException:
            if probe is not None:
                await asyncio.shield(cache.abandon(probe))
            raise
        forward = Forward(request, metering, metered, reservation, mode, key, probe)
        return _relay(request, metering, metered, await _forward(forward), reservation)


def _missed(mode: Mode) -> CacheResult:
    return "BYPASS" if mode == "bypass" else "MISS"


async def reserve(
    metering: Metering, metered: Metered, result: CacheResult, units: Sequence[Unit] | None = None
) -> Reservation:
    """Reserve `metered`'s cost (only `units`, when given); a refusal leaves with the
    cache's header (`result`) and is counted, and the door is told of it."""
    try:
        with tracing.span("quota.reserve"):
            return await metering.ledger.reserve(
                metered.identity, metered.cost, units, metered.spent_on
            )
    except GatewayError as exc:
        metering.room.note(metered.identity, exc)
        exc.headers["x-gateway-cache"] = result
        tracing.note(cache=result)
        metrics.CACHE_REQUESTS.labels(result.lower()).inc()
        raise


async def _forward(forward: Forward) -> Cached:
    """The answer from upstream (or a coalesced leader), quota settled to what the upstream
    did; an error leaves with the quota's and the cache's headers."""
    try:
        return await forward.run()
    except GatewayError as exc:
        result = _missed(forward.mode)
        exc.headers.update(
            answer_headers(forward.metering, forward.metered, forward.reservation, result)
        )
        tracing.note(cache=result)
        metrics.CACHE_REQUESTS.labels(result.lower()).inc()
        raise


@dataclass
class Forward:
    """One reserved request on its way upstream, and how far it got."""

    request: Request
    metering: Metering
    metered: Metered
    reservation: Reservation
    mode: Mode
    key: str
    probe: Probe | None
    sent: bool = False  # handed to the upstream client: the company may be billed
    answer: UpstreamAnswer | None = None  # what the upstream answered, once it did

    async def run(self) -> Cached:
        """The answer, with the quota settled however it ends; raises what the call raised.

        A caller hanging up before the request is sent raises `ClientDisconnect` (everything
        given back); after, it raises the same but the call goes on in the background.
        """
        work = self.metering.background.start(self._settled())
        watcher = asyncio.ensure_future(wait_disconnect(self.request))
        try:
            await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # shutdown past its grace: the call goes too
            work.cancel()
            raise
        finally:
            watcher.cancel()
        if not work.done():
            if not self.sent:
                work.cancel()  # nothing sent: it gives everything back as it unwinds
            raise ClientDisconnect()
        return work.result()

    async def _settled(self) -> Cached:
        try:
            cached = await self._answer()
        except BaseException as exc:
            with tracing.span("quota.settle"):
                await asyncio.shield(self.unwind(exc))
            raise
        with tracing.span("quota.settle"):
            await asyncio.shield(self.settle(cached))
        return cached

    async def _answer(self) -> Cached:
        cache, asked = self.metering.cache, self.metered.request
        if self.mode == "bypass":
            return Cached(await self._produce(), "BYPASS")
        if self.mode == "refresh":  # no-cache: a fresh answer, then stored
            fresh = await self._produce()
            await cache.put(self.key, fresh, asked.response_format, asked=asked.n)
            return Cached(fresh, "MISS")
        assert self.probe is not None  # mode "use" probed
        return await cache.fetch(
            self.key, asked.response_format, self._produce, self.probe, asked=asked.n
        )

    async def _produce(self) -> UpstreamAnswer:
        metered = self.metered
        started = time.perf_counter()
        self.sent = True
        try:
            user = self.metering.user_field(metered.identity)
            with tracing.span("upstream", tracing.CLIENT):
                self.answer = await metered.upstream.produce(metered.request, user)
                tracing.note(images=self.answer.images, usd=self.answer.usd)
            return self.answer
        finally:
            seconds = time.perf_counter() - started
            metrics.UPSTREAM_SECONDS.observe(seconds)
            self.request.state.log["upstream_ms"] = round(seconds * 1000, 2)

    async def settle(self, cached: Cached) -> None:
        """Settle the call to the answer it got: another's (coalesced) like a hit; its own
        as delivered (its images, and its cost when the upstream reported it)."""
        ledger = self.metering.ledger
        if cached.result == "COALESCED":  # another request's call: charged like a hit
            if cached.answer.images:
                await ledger.settle_as_hit(self.reservation, self.metering.hits_count_against)
            else:
                await ledger.refund(self.reservation)
            return
        got = cached.answer
        await ledger.settle(self.reservation, got.images, self.metered.request.n, got.usd)

    async def unwind(self, exc: BaseException) -> None:
        """Settle a call that ended without an answer to relay (and free the probe's lock)."""
        if self.probe is not None:  # the lock too, if fetch never got to run
            await self.metering.cache.abandon(self.probe)
        ledger, n = self.metering.ledger, self.metered.request.n
        if not self.sent or _refund_in_full(exc):  # nothing reached a model
            await ledger.refund(self.reservation)
        elif self.answer is not None:  # answered (and maybe stored): delivered
            await ledger.settle(self.reservation, self.answer.images, n, self.answer.usd)
        elif not _may_have_billed(exc) or self.metering.on_timeout == "refund":
            await ledger.settle(self.reservation, 0, n)
        # else: the answer was lost after sending; the reservation stands (keep_charge)


def _refund_in_full(exc: BaseException) -> bool:
    """True when the upstream says nothing of the call reached a model: it was never sent,
    or only to models it no longer has."""
    return isinstance(exc, UpstreamError) and exc.refund_in_full


def _may_have_billed(exc: BaseException) -> bool:
    """False only when the upstream said it produced nothing, or never got the request; a
    cancellation or a bug after sending leaves it unknown."""
    return not isinstance(exc, UpstreamError) or exc.may_have_billed


async def wait_disconnect(request: Request) -> None:
    """Return once the caller has hung up."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def answer_headers(
    metering: Metering, metered: Metered, reservation: Reservation, result: CacheResult
) -> dict[str, str]:
    """What every metered answer carries: the upstream's marks, the quota's state, the
    cache's result."""
    return {
        **metered.upstream.headers,
        **metering.marks,
        **quota_headers(reservation.states(), metering.ledger.clock()),
        "x-gateway-cache": result,
    }


def _relay(
    request: Request,
    metering: Metering,
    metered: Metered,
    cached: Cached,
    reservation: Reservation,
) -> Response:
    hit = cached.result == "HIT"
    request.state.log.update(cache=cached.result, outcome="cache_hit" if hit else "ok")
    metrics.CACHE_REQUESTS.labels(cached.result.lower()).inc()
    metrics.IMAGES.labels(request.state.log["team"]).inc(cached.answer.images)
    tracing.note(cache=cached.result, images=cached.answer.images, usd=_usd(metered, cached))
    headers = answer_headers(metering, metered, reservation, cached.result)
    if cached.answer.request_id:
        headers["x-upstream-request-id"] = cached.answer.request_id
    return Response(cached.answer.body, media_type="application/json", headers=headers)


def _usd(metered: Metered, cached: Cached) -> float:
    """What the answer cost upstream, in USD: what it reported, else the price of the images
    it delivered; nothing for an answer another call paid for (a hit, a coalesced answer)."""
    answer = cached.answer
    if cached.result in ("HIT", "COALESCED"):
        return 0.0
    if answer.usd is not None:
        return answer.usd
    return metered.cost.get("usd", 0) * answer.images / metered.request.n / UNIT_SCALE["usd"]
