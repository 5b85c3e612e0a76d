"""A reserved request's way upstream and back, settled to what the upstream did.

Once a request has been sent upstream the company may be billed, so the charge follows the
upstream, not the caller:

- a request never sent (the caller hung up while waiting on a coalesced call, the upstream
  could not be connected to) gets everything back;
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
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from gateway import metrics
from gateway.auth.identity import Identity
from gateway.cache import Cached, Mode, Probe
from gateway.container import Services
from gateway.errors import UpstreamError, UpstreamUnreachable
from gateway.ledger import Reservation
from gateway.upstream.base import UpstreamAnswer, VariationRequest


@dataclass
class Forward:
    """One reserved request on its way upstream, and how far it got."""

    request: Request
    services: Services
    identity: Identity
    params: VariationRequest
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
        work = self.services.background.start(self._settled())
        watcher = asyncio.ensure_future(_wait_disconnect(self.request))
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
            await asyncio.shield(self._unwind(exc))
            raise
        await asyncio.shield(self._settle(cached))
        return cached

    async def _answer(self) -> Cached:
        services, params = self.services, self.params
        if self.mode == "bypass":
            return Cached(await self._produce(), "BYPASS")
        if self.mode == "refresh":  # no-cache: a fresh answer, then stored
            fresh = await self._produce()
            await services.cache.put(self.key, fresh, params.response_format, asked=params.n)
            return Cached(fresh, "MISS")
        assert self.probe is not None  # mode "use" probed
        return await services.cache.fetch(
            self.key, params.response_format, self._produce, self.probe, asked=params.n
        )

    async def _produce(self) -> UpstreamAnswer:
        started = time.perf_counter()
        self.sent = True
        try:
            user = self.services.user_field(self.identity)
            self.answer = await self.services.upstream.create_variation(self.params, user)
            return self.answer
        finally:
            seconds = time.perf_counter() - started
            metrics.UPSTREAM_SECONDS.observe(seconds)
            self.request.state.log["upstream_ms"] = round(seconds * 1000, 2)

    async def _settle(self, cached: Cached) -> None:
        ledger = self.services.ledger
        if cached.result == "COALESCED":  # another request's call: charged like a hit
            if cached.answer.images:
                units = self.services.settings.config.cache.hits_count_against
                await ledger.settle_as_hit(self.reservation, units)
            else:
                await ledger.refund(self.reservation)
            return
        got = cached.answer
        await ledger.settle(self.reservation, got.images, self.params.n, got.usd)

    async def _unwind(self, exc: BaseException) -> None:
        """Settle a call that ended without an answer to relay (and free the probe's lock)."""
        if self.probe is not None:  # the lock too, if fetch never got to run
            await self.services.cache.abandon(self.probe)
        ledger, n = self.services.ledger, self.params.n
        if not self.sent or isinstance(exc, UpstreamUnreachable):  # nothing went out
            await ledger.refund(self.reservation)
        elif self.answer is not None:  # answered (and maybe stored): delivered
            await ledger.settle(self.reservation, self.answer.images, n, self.answer.usd)
        elif not _may_have_billed(exc) or self._policy == "refund":
            await ledger.settle(self.reservation, 0, n)
        # else: the answer was lost after sending; the reservation stands (keep_charge)

    @property
    def _policy(self) -> str:
        return self.services.settings.config.upstream.on_timeout


def _may_have_billed(exc: BaseException) -> bool:
    """False only when the upstream said it produced nothing, or never got the request; a
    cancellation or a bug after sending leaves it unknown."""
    return not isinstance(exc, UpstreamError) or exc.may_have_billed


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
