"""The admin plane's records: runtime keys, runtime quota rules, budget alert rules and
their webhooks, runtime model lists and prices, audit entries, snapshots.

Plain data and their JSON forms, shared by the admin store, the per-replica state and the
routes. A key record holds the SHA-256 of its secret (and of the previous secret during a
rotation's grace period), never a secret; `public()` is what any answer or audit shows. A
webhook keeps its signing secret itself (the gateway signs with it), and shows it only in
the answer that creates or rotates it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from gateway.auth.base import Role
from gateway.quota.policy import Overrides, Scope
from gateway.settings.config import QuotaRule
from gateway.settings.models import ModelPrice
from gateway.upstream.catalogue import RuntimeModels

log = logging.getLogger("gateway.admin")
Target = Literal["keys", "quotas", "webhooks", "alerts", "models"]
WebhookFormat = Literal["json", "slack", "teams"]


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KeyRecord:
    """A runtime key: who it names, its lifetime, and the digests that open it."""

    id: str
    user: str
    team: str
    role: Role
    key_sha256: str
    created_at: float
    created_by: str
    expires_at: float | None = None
    note: str = ""
    revoked_at: float | None = None
    previous_sha256: str | None = None  # the secret before the last rotation ...
    previous_expires_at: float | None = None  # ... working until then

    def live(self, now: float) -> bool:
        """Whether the key still opens (not revoked, not expired)."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self, last_used: float | None = None) -> dict[str, Any]:
        """What answers and the audit show: no secret, no digest."""
        return {
            "id": self.id,
            "user": self.user,
            "team": self.team,
            "role": self.role,
            "note": self.note,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "last_used_at": iso(last_used),
            "revoked_at": iso(self.revoked_at),
            "previous_key_expires_at": iso(self.previous_expires_at),
        }

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @staticmethod
    def decode(raw: str | bytes) -> KeyRecord:
        return KeyRecord(**orjson.loads(raw))


def quota_field(scope: Scope, subject: str) -> str:
    """The field naming a subject's runtime rules: `user:<name>` or `team:<name>`."""
    return f"{scope}:{subject}"


def encode_rules(rules: tuple[QuotaRule, ...]) -> str:
    return orjson.dumps([rule.model_dump() for rule in rules]).decode()


def decode_overrides(raw: Mapping[str, str | bytes]) -> Overrides:
    """The runtime rules of a store's quota hash, by (scope, subject)."""
    out: dict[tuple[Scope, str], tuple[QuotaRule, ...]] = {}
    for name, value in raw.items():
        scope, _, subject = name.partition(":")
        if scope in ("user", "team"):
            rules = tuple(QuotaRule.model_validate(rule) for rule in orjson.loads(value))
            out[("user" if scope == "user" else "team", subject)] = rules
    return out


def list_field(operation: str) -> str:
    """The field naming an operation's runtime model list: `list:<operation>`."""
    return f"list:{operation}"


def price_field(model: str) -> str:
    """The field naming a model's runtime price table: `price:<model>`."""
    return f"price:{model}"


def decode_models(raw: Mapping[str, str | bytes]) -> RuntimeModels:
    """The runtime model lists and prices of a store's models hash. An entry this version
    cannot read (written by another) is left out, and said, rather than stopping the
    replica from following the admin state."""
    lists: dict[str, tuple[str, ...]] = {}
    prices: dict[str, ModelPrice] = {}
    for name, value in raw.items():
        kind, _, subject = name.partition(":")
        try:
            if kind == "list":
                lists[subject] = tuple(str(model) for model in orjson.loads(value))
            elif kind == "price":
                prices[subject] = ModelPrice.model_validate(orjson.loads(value))
        except (ValueError, TypeError) as exc:  # pydantic's and orjson's errors are ValueErrors
            log.warning("runtime model setting %s left out: %s", name, exc)
    return RuntimeModels(lists, prices)


@dataclass(frozen=True)
class Webhook:
    """Where budget alerts are posted, in which payload shape, signed with `secret`."""

    id: str
    name: str
    url: str
    format: WebhookFormat
    secret: str
    created_at: float
    created_by: str

    def public(self) -> dict[str, Any]:
        """What answers and the audit show: never the secret."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "format": self.format,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
        }

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @staticmethod
    def decode(raw: str | bytes) -> Webhook:
        return Webhook(**orjson.loads(raw))


@dataclass(frozen=True)
class AlertRule:
    """A subject's budget alerts: thresholds (percents) and the webhooks that hear them."""

    thresholds: tuple[int, ...]
    webhooks: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "webhooks": list(self.webhooks)}

    def encode(self) -> str:
        return orjson.dumps(self.public()).decode()

    @staticmethod
    def decode(raw: str | bytes) -> AlertRule:
        data = orjson.loads(raw)
        return AlertRule(tuple(data["thresholds"]), tuple(data["webhooks"]))


Alerts = Mapping[tuple[Scope, str], AlertRule]


def decode_alerts(raw: Mapping[str, str | bytes]) -> Alerts:
    """The alert rules of a store's hash, by (scope, subject) (fields as `quota_field`)."""
    out: dict[tuple[Scope, str], AlertRule] = {}
    for name, value in raw.items():
        scope, _, subject = name.partition(":")
        if scope in ("user", "team"):
            out[("user" if scope == "user" else "team", subject)] = AlertRule.decode(value)
    return out


@dataclass(frozen=True)
class Snapshot:
    """Every runtime key, quota rule, webhook, alert rule, model list and price, as of one
    generation of the admin state."""

    generation: int = 0
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)  # by id
    overrides: Overrides = field(default_factory=dict)
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)  # by id
    alerts: Alerts = field(default_factory=dict)
    models: RuntimeModels = field(default_factory=RuntimeModels)
    # The stored fields as read, by target: what a writer compares to tell whether the very
    # record it writes changed under it (a race on one record) or only others did.
    raw: Mapping[Target, Mapping[str, str | bytes]] = field(default_factory=dict, repr=False)

    def stored(self, target: Target, name: str) -> str | bytes | None:
        """The stored value of `target`'s field `name`, or None."""
        return self.raw.get(target, {}).get(name)


@dataclass(frozen=True)
class Change:
    """One admin write: set (or, with `value` None, delete) one field, and its audit entry."""

    target: Target
    field: str
    value: str | None
    audit: Mapping[str, Any]


@dataclass(frozen=True)
class AuditQuery:
    """Which audit entries to read, newest first: `before` is the paging cursor."""

    limit: int = 50
    before: str | None = None  # an entry id: only older ones
    since_ms: int | None = None
    until_ms: int | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether `entry` passes the field filters."""
        wanted = {"actor": self.actor, "action": self.action, "target": self.target}
        return all(value is None or entry.get(name) == value for name, value in wanted.items())


TARGETS: tuple[Target, ...] = ("keys", "quotas", "webhooks", "alerts", "models")


def snapshot_of(generation: int, hashes: Mapping[Target, Mapping[str, str | bytes]]) -> Snapshot:
    """The snapshot the admin store's hashes hold (field -> JSON, by target)."""
    return Snapshot(
        generation,
        {k: KeyRecord.decode(v) for k, v in hashes.get("keys", {}).items()},
        decode_overrides(hashes.get("quotas", {})),
        {k: Webhook.decode(v) for k, v in hashes.get("webhooks", {}).items()},
        decode_alerts(hashes.get("alerts", {})),
        decode_models(hashes.get("models", {})),
        {target: dict(fields) for target, fields in hashes.items()},
    )
