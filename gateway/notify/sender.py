"""The background sender of budget alerts: a bounded queue per process, a few attempts under
way at once, retries with a doubling backoff, and every attempt's outcome in the history.

A request never waits on it: the quota ledger hands over a crossing with `crossed`, which
only looks the subject's webhooks up in this replica's admin snapshot and queues one
delivery per webhook (a full queue drops it, counted and logged). A delivery is one body,
signed afresh at each attempt (notify/signing.py); an answer other than 2xx, a timeout or a
refused connection is retried after `backoff_seconds`, doubling, until `attempts` are spent.
A retry waits outside the queue, so a dead receiver holds no sender.

History: each attempt adds `sent`, `retrying` or `failed` to the admin store's delivery log
(`GET /admin/deliveries`); with the state Redis down the log misses those lines (they are
logged), while deliveries go on from the snapshot in memory. At shutdown, what is queued
or under way gets `shutdown_seconds`; what is left (retries waiting included) is recorded
as failed, reason `shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
import orjson

from gateway.admin.records import Webhook
from gateway.admin.state import RuntimeState
from gateway.metrics import NOTIFICATIONS
from gateway.notify.payloads import headline, payload
from gateway.notify.signing import signed_headers
from gateway.quota.alerts import Crossing
from gateway.settings.config import NotificationsConfig
from gateway.store.base import StoreError

log = logging.getLogger("gateway.notify")


class Delivery(NamedTuple):
    """One body for one webhook, and how many attempts it has had."""

    id: str
    webhook: str
    event: str
    body: bytes
    summary: str
    attempt: int = 0


class Notifier:
    """Delivers crossings to the webhooks of the subject's alert rule, in the background."""

    def __init__(
        self,
        state: RuntimeState,
        config: NotificationsConfig,
        timezone: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state, self._config, self._timezone, self._clock = state, config, timezone, clock
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(config.queue_size)
        self._waiting: dict[str, tuple[asyncio.TimerHandle, Delivery]] = {}  # retries
        self._workers: list[asyncio.Task[None]] = []
        self._busy: dict[str, Delivery] = {}  # attempts under way
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
        )
        self._open = True

    def crossed(self, crossing: Crossing) -> None:
        """Queue the crossing for each webhook of its subject's alert rule. Never blocks."""
        rule = self._state.snapshot.alerts.get((crossing.scope, crossing.subject))
        log.info("budget alert: %s", headline(crossing))
        for webhook_id in rule.webhooks if rule else ():
            hook = self._state.snapshot.webhooks.get(webhook_id)
            if hook is not None:
                body = payload(hook.format, crossing, self._timezone)
                self._enqueue(self._delivery(hook, "budget.threshold_crossed", body, crossing))

    def test(self, hook: Webhook) -> str:
        """Queue a test message to `hook`; its delivery id."""
        delivery = self._delivery(hook, "webhook.test", payload(hook.format, None, ""), None)
        self._enqueue(delivery)
        return delivery.id

    def _delivery(
        self, hook: Webhook, event: str, body: dict[str, Any], crossing: Crossing | None
    ) -> Delivery:
        summary = headline(crossing) if crossing else "test message"
        delivery_id = "dlv_" + secrets.token_hex(8)
        return Delivery(delivery_id, hook.id, event, orjson.dumps(body), summary)

    def _enqueue(self, delivery: Delivery) -> None:
        try:
            if not self._open:
                raise asyncio.QueueFull
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            NOTIFICATIONS.labels("dropped").inc()
            log.warning("alert delivery %s to %s dropped", delivery.id, delivery.webhook)

    async def start(self) -> None:
        """Start the senders."""
        for _ in range(self._config.concurrency):
            self._workers.append(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._busy[delivery.id] = delivery
            try:
                await self._attempt(delivery._replace(attempt=delivery.attempt + 1))
            finally:
                self._busy.pop(delivery.id, None)
                self._queue.task_done()

    async def _attempt(self, delivery: Delivery) -> None:
        """One attempt; then sent, a retry scheduled, or failed for good."""
        hook = self._state.snapshot.webhooks.get(delivery.webhook)
        if hook is None:
            return await self._record(delivery, "failed", None, "the webhook was deleted")
        status, error = await self._post(hook, delivery)
        if status is not None and 200 <= status < 300:
            NOTIFICATIONS.labels("sent").inc()
            return await self._record(delivery, "sent", status, None)
        if delivery.attempt >= self._config.attempts or not self._open:
            NOTIFICATIONS.labels("failed").inc()
            return await self._record(delivery, "failed", status, error)
        NOTIFICATIONS.labels("retried").inc()
        delay = self._config.backoff_seconds * 2 ** (delivery.attempt - 1)
        handle = asyncio.get_running_loop().call_later(delay, self._retry, delivery.id)
        self._waiting[delivery.id] = (handle, delivery)
        return await self._record(delivery, "retrying", status, error, retry_in=delay)

    def _retry(self, delivery_id: str) -> None:
        if self._open:  # once closing, the retry is left for close() to record
            _, delivery = self._waiting.pop(delivery_id)
            self._enqueue(delivery)

    async def _post(self, hook: Webhook, delivery: Delivery) -> tuple[int | None, str | None]:
        """POST the signed body; the status, or None and what went wrong."""
        headers = signed_headers(
            hook.secret, int(self._clock()), delivery.body, delivery.id, delivery.event
        )
        try:
            response = await self._client.post(hook.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        reason = None if response.is_success else f"HTTP {response.status_code}"
        return response.status_code, reason

    async def _record(
        self,
        delivery: Delivery,
        status: str,
        http_status: int | None,
        error: str | None,
        retry_in: float | None = None,
    ) -> None:
        entry = {
            "id": delivery.id,
            "webhook": delivery.webhook,
            "event": delivery.event,
            "summary": delivery.summary,
            "attempt": delivery.attempt,
            "status": status,
            "http_status": http_status,
            "error": error,
            "retry_in_seconds": retry_in,
            "at": datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        try:
            await self._state.store.record_delivery(entry)
        except StoreError:
            log.warning("alert delivery not in the history (store down): %s", entry)

    async def close(self) -> None:
        """Let what is queued go for `shutdown_seconds`; record the rest as failed."""
        self._open = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self._config.shutdown_seconds)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left = [d for _, d in self._waiting.values()] + list(self._busy.values())
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for handle, _ in self._waiting.values():
            handle.cancel()
        for delivery in left:
            NOTIFICATIONS.labels("dropped").inc()
            await self._record(delivery, "failed", None, "shutdown")
        await self._client.aclose()
