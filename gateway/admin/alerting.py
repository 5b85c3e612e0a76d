"""What an admin may change about budget alerts: the webhooks they are posted to, and each
team's (or user's) thresholds. Checked, written once and audited exactly as keys and quota
rules are (operations.py's compare-and-set on the admin generation, one audit entry per
change, every replica told); a webhook's secret is in no audit entry and in no answer but
the one that creates or rotates it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from gateway.admin.operations import Actor, AdminOps, name, parse
from gateway.admin.records import AlertRule, Change, Snapshot, Webhook, quota_field
from gateway.errors import InvalidRequest, NotFound
from gateway.quota.policy import Scope
from gateway.settings.types import Strict


class WebhookIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=2000)
    format: Literal["json", "slack", "teams"] = "json"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("no user:password@ in the URL: it would be shown to every admin")
        return value


class AlertsPut(Strict):
    thresholds: list[int] = Field(min_length=1, max_length=10)
    webhooks: list[str] = Field(min_length=1, max_length=10)

    @field_validator("thresholds")
    @classmethod
    def _percents(cls, value: list[int]) -> list[int]:
        if any(not 1 <= t <= 100 for t in value) or len(set(value)) != len(value):
            raise ValueError("distinct whole percents from 1 to 100, e.g. [50, 80, 95, 100]")
        return sorted(value)


class WebhookCreated(NamedTuple):
    """A webhook just created or given a new secret, and that secret (shown this once)."""

    webhook: Webhook
    secret: str


def new_secret() -> str:
    """A webhook signing secret: 32 random bytes, as `whsec_` and URL-safe base64."""
    return "whsec_" + secrets.token_urlsafe(32)


def _webhook_change(action: str, before: Webhook | None, after: Webhook | None) -> Change:
    hook = after if after is not None else before
    assert hook is not None
    target = hook.id
    audit = {
        "action": action,
        "target": target,
        "before": before.public() if before else None,
        "after": after.public() if after else None,
    }
    return Change("webhooks", target, after.encode() if after else None, audit)


def _existing(snapshot: Snapshot, webhook_id: str) -> Webhook:
    found = snapshot.webhooks.get(webhook_id)
    if found is None:
        raise NotFound(f"No webhook with id {webhook_id[:64]}.")
    return found


class AlertOps:
    """Webhooks and alert thresholds, written through the admin plane's one write path."""

    def __init__(self, ops: AdminOps) -> None:
        self._ops = ops

    async def create_webhook(self, body: Mapping[str, Any], actor: Actor) -> WebhookCreated:
        """A new webhook, with its signing secret."""
        asked: WebhookIn = parse(WebhookIn, body)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, WebhookCreated]:
            secret = new_secret()
            hook = Webhook(
                "wh_" + secrets.token_hex(8), asked.name, asked.url, asked.format, secret, now,
                actor.user,
            )  # fmt: skip
            return _webhook_change("webhook.create", None, hook), WebhookCreated(hook, secret)

        created: WebhookCreated = await self._ops.write(decide, actor)
        return created

    async def rotate_webhook(self, webhook_id: str, actor: Actor) -> WebhookCreated:
        """A new signing secret; deliveries are signed with it from the next one on."""

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, WebhookCreated]:
            before = _existing(snapshot, webhook_id)
            secret = new_secret()
            after = replace(before, secret=secret)
            return _webhook_change("webhook.rotate", before, after), WebhookCreated(after, secret)

        rotated: WebhookCreated = await self._ops.write(decide, actor)
        return rotated

    async def delete_webhook(self, webhook_id: str, actor: Actor) -> Webhook:
        """Remove a webhook; alert rules naming it no longer post there."""

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, Webhook]:
            before = _existing(snapshot, webhook_id)
            return _webhook_change("webhook.delete", before, None), before

        deleted: Webhook = await self._ops.write(decide, actor)
        return deleted

    async def set_alerts(
        self, scope: Scope, subject: str, body: Mapping[str, Any], actor: Actor
    ) -> AlertRule:
        """The subject's thresholds and the webhooks that hear them, replaced as a whole."""
        name(subject, scope)
        asked: AlertsPut = parse(AlertsPut, body)
        rule = AlertRule(tuple(asked.thresholds), tuple(dict.fromkeys(asked.webhooks)))

        def decide(snapshot: Snapshot, now: float) -> tuple[Change | None, AlertRule]:
            unknown = [w for w in rule.webhooks if w not in snapshot.webhooks]
            if unknown:
                raise InvalidRequest(
                    f"webhooks: no webhook with id {unknown[0][:64]}", code="invalid_value",
                    param="webhooks",
                )  # fmt: skip
            before = snapshot.alerts.get((scope, subject))
            if before == rule:
                return None, rule
            return _alerts_change("alerts.set", scope, subject, before, rule), rule

        done: AlertRule = await self._ops.write(decide, actor)
        return done

    async def unset_alerts(self, scope: Scope, subject: str, actor: Actor) -> AlertRule:
        """Drop the subject's alerts; the dropped rule."""
        name(subject, scope)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, AlertRule]:
            before = snapshot.alerts.get((scope, subject))
            if before is None:
                raise NotFound(f"No alerts for {scope} {subject}.")
            return _alerts_change("alerts.unset", scope, subject, before, None), before

        dropped: AlertRule = await self._ops.write(decide, actor)
        return dropped


def _alerts_change(
    action: str, scope: Scope, subject: str, before: AlertRule | None, after: AlertRule | None
) -> Change:
    target = quota_field(scope, subject)
    audit = {
        "action": action,
        "target": target,
        "before": before.public() if before else None,
        "after": after.public() if after else None,
    }
    return Change("alerts", target, after.encode() if after else None, audit)
