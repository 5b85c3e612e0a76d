"""What an admin may change at run time, checked, applied once, and audited.

Each operation reads the admin store's current state, decides (refusing bad input with a
400 that changes nothing), and writes one change with its audit entry in one atomic step,
compare-and-set on the state's generation: two admins racing never both win on stale
state. The audit entry says who (actor, request id, source address), what (action,
target), and the record before and after, never a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from gateway.admin.records import Change, KeyRecord, Snapshot, encode_rules, iso, quota_field
from gateway.admin.state import RuntimeState
from gateway.auth.keys import key_digest, new_key
from gateway.errors import AdminBusy, InvalidRequest, NotFound, UserExists
from gateway.quota.books import book_keys
from gateway.quota.policy import Scope
from gateway.redaction import looks_like_secret, redact_keys
from gateway.settings.config import QuotaRule
from gateway.settings.types import Name, Strict, error_message
from gateway.vocabulary import NAME_RULE, Unit, Window, external_name

audit_log = logging.getLogger("gateway.audit")
MAX_KEYS_PER_USER = 20
MAX_GRACE_SECONDS = 30 * 86_400
MAX_LIMIT = 1e12  # past this, micro-dollar counters lose integer precision
# A write that lost the compare-and-set decides again: up to this many tries in all, after
# pauses of up to 10, 20, 40, 80, then 160 ms (uniformly jittered), so a burst of writes
# to different records (a provisioning script) all land, in about three seconds at most.
_ATTEMPTS = 30
_PAUSE_SECONDS = 0.01
_SAME_RECORD_RACES = 3  # lost to a change of the very record written: real contention


# The one form `expires_at` takes: an ISO 8601 date and time as a JSON string, seconds and
# their fraction optional, `Z` or an offset optional (none: UTC). Not a number: an epoch
# in seconds and one in milliseconds look alike, and a mistaken one makes a key that never
# works or never ends.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")
ISO_TIME_RULE = "an ISO 8601 date and time as a string, e.g. 2027-01-01T00:00:00Z"


def _iso_time(value: object) -> datetime:
    """`value` if it is a string of the one form, as a time (UTC if it names no offset)."""
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise ValueError(f"must be {ISO_TIME_RULE}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a real date and time: {value[:40]}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class KeyCreate(Strict):
    user: Name
    team: Name
    role: Literal["user", "admin"] = "user"
    expires_at: Annotated[datetime, PlainValidator(_iso_time)] | None = None
    note: str = Field("", max_length=200)
    new_team: StrictBool = False  # the admin opens a team no config, pool or key names yet
    existing_user: StrictBool = False  # the admin adds a key to a name someone else holds


class KeyRotate(Strict):
    grace_seconds: StrictInt = Field(0, ge=0, le=MAX_GRACE_SECONDS)


class RuleIn(Strict):
    unit: Unit
    window: Window
    limit: StrictFloat = Field(ge=0, le=MAX_LIMIT, allow_inf_nan=False)


class RulesPut(Strict):
    rules: list[RuleIn] = Field(min_length=1, max_length=16)


class Actor(NamedTuple):
    """Who asks for a change, for the audit."""

    user: str
    request_id: str
    source: str | None
    credential: Mapping[str, str] | None = None  # the kind used; an SSO token's iss and sub


class Created(NamedTuple):
    """A key just created or rotated, and its secret (shown this once)."""

    record: KeyRecord
    secret: str


def parse(model: type[Strict], body: Mapping[str, Any]) -> Any:
    """`body` validated as `model`; a 400 naming the first bad field otherwise."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        codes = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}
        message = (
            "unknown parameter" if first["type"] == "extra_forbidden" else error_message(first)
        )
        code = codes.get(first["type"], "invalid_value")
        # A value said back (a name breaking the rule) never carries a pasted secret.
        message = redact_keys(message)
        raise InvalidRequest(f"{param}: {message}", code=code, param=param) from None


def name(value: str, param: str) -> str:
    """A user or team name from a path, checked against the identity rules."""
    if external_name(value) is None:
        raise InvalidRequest(f"{param}: must be {NAME_RULE}", code="invalid_value", param=param)
    return not_a_secret(value, param)


def not_a_secret(value: str, param: str) -> str:
    """`value`, unless it holds something shaped like a key or a token (pasted in the wrong
    field): refused without repeating it, before it can reach the audit trail or a log."""
    if looks_like_secret(value):
        raise InvalidRequest(
            f"{param}: this holds what looks like a key's secret or a token; it is not "
            "repeated, stored or logged. If it is a real secret, treat it as exposed.",
            code="invalid_value", param=param,
        )  # fmt: skip
    return value


def checked_key_id(value: str) -> str:
    """A key id from a path; a key's secret typed there is refused without repeating it."""
    if looks_like_secret(value):
        raise InvalidRequest(
            "id: this is a key's secret, not its id (key_ and 16 hex digits, as `GET "
            "/admin/keys` lists). Treat that secret as exposed and rotate its key.",
            code="invalid_value", param="id",
        )  # fmt: skip
    return value


def known_teams(configured: frozenset[str], snapshot: Snapshot, now: float) -> frozenset[str]:
    """The teams a runtime key may name as they are: the config's, those with a runtime
    pool, and those of live runtime keys (opened by an earlier `new_team`)."""
    pools = {subject for scope, subject in snapshot.overrides if scope == "team"}
    keyed = {record.team for record in snapshot.keys.values() if record.live(now)}
    return configured | pools | keyed


def check_team(team: str, known: frozenset[str], *, new_team: bool) -> None:
    """Refuse a team that only differs in case from a known one (always: it would split a
    budget and its dashboards on a typo), or that is new when `new_team` was not said."""
    if team in known:
        return
    twin = next((name for name in sorted(known) if name.casefold() == team.casefold()), None)
    if twin is not None:
        raise InvalidRequest(
            f"team: {team!r} is not a team of this gateway; did you mean {twin!r}? "
            "Team names are case-sensitive.", code="invalid_value", param="team",
        )  # fmt: skip
    if not new_team:
        raise InvalidRequest(
            f"team: {team!r} is not a team of this gateway (none in the config, no runtime "
            'pool, no key). To open it, say so: "new_team": true (CLI --new-team; console: '
            "New team).",
            code="invalid_value", param="team",
        )  # fmt: skip


def check_user(
    user: str, config_users: frozenset[str], snapshot: Snapshot, now: float, actor: Actor
) -> None:
    """Refuse a key for a name that a configured principal holds, or that live keys made by
    another admin hold (it would act, and be audited, as that user)."""
    if user in config_users:
        holder = "a principal of the config"
    else:
        makers = {r.created_by for r in snapshot.keys.values() if r.user == user and r.live(now)}
        if not makers - {actor.user}:
            return
        holder = "live keys made by " + ", ".join(sorted(makers - {actor.user}))
    raise UserExists(
        f"user: {user!r} is already {holder}; a new key would act as that user. To add a "
        'key for the same user, say so: "existing_user": true (CLI --existing-user).',
        param="user",
    )


def _changed_under(lost: tuple[Snapshot, Change], now: Snapshot) -> bool:
    """Whether the record a lost write was changing is not what it read any more."""
    read, change = lost
    return read.stored(change.target, change.field) != now.stored(change.target, change.field)


def _audited(change: Change, actor: Actor, now: float) -> dict[str, Any]:
    """`change`'s audit entry, with who made it (user, credential, request, address) and when."""
    audit = {**change.audit, "actor": actor.user, "request_id": actor.request_id}
    audit["source_address"] = actor.source
    if actor.credential is not None:
        audit["credential"] = dict(actor.credential)
    audit["time"] = iso(now)
    return audit


class RulesSet(NamedTuple):
    """A subject's runtime rules as set, and the ones they replaced (None: there were none)."""

    rules: tuple[QuotaRule, ...]
    replaced: tuple[QuotaRule, ...] | None


class AdminOps:
    """The admin operations over one replica's `RuntimeState` (and its store); `teams` are
    the configured ones, `users` the configured principals' names."""

    def __init__(
        self,
        state: RuntimeState,
        teams: frozenset[str] = frozenset(),
        users: frozenset[str] = frozenset(),
    ) -> None:
        self.state, self._teams, self._users = state, teams, users

    async def _write(self, decide: Any, actor: Actor) -> Any:
        """Run `decide(snapshot, now) -> (change, result)` and apply it, deciding again on
        fresh state after each lost race (with a jittered pause). A race lost to writes of
        other records is retried up to `_ATTEMPTS` times; `AdminBusy` once the record this
        write changes was itself changed under it `_SAME_RECORD_RACES` times."""
        lost: tuple[Snapshot, Change] | None = None
        same_record = 0
        for attempt in range(_ATTEMPTS):
            snapshot, now = await self.state.store.snapshot(), self.state.clock()
            if lost is not None and _changed_under(lost, snapshot):
                same_record += 1
                if same_record >= _SAME_RECORD_RACES:
                    break
            change, result = decide(snapshot, now)
            if change is None:
                return result  # nothing to change: nothing written, nothing audited
            audit = _audited(change, actor, now)
            entry_id = await self.state.store.apply(
                replace(change, audit=audit), snapshot.generation, now
            )
            if entry_id is not None:
                audit_log.info(json.dumps({"audit_id": entry_id, **audit}, sort_keys=True))
                await self.state.refresh()  # this replica sees its own write at once
                return result
            lost = (snapshot, change)
            pause = _PAUSE_SECONDS * 2 ** min(attempt, 4)
            await asyncio.sleep(random.uniform(0, pause))  # noqa: S311 (jitter, not a secret)
        raise AdminBusy()

    async def write(self, decide: Any, actor: Actor) -> Any:
        """Run `decide(snapshot, now) -> (change, result)` as one audited compare-and-set
        write, retried on a race: the plane's one write path, for its other parts too
        (alerting.py's webhooks and alert rules, models.py's model lists and prices)."""
        return await self._write(decide, actor)

    async def month_usd(self, teams: Iterable[str], month: str) -> dict[str, float]:
        """Each team's usd booked in `month` (`YYYYMM`, the company's time zone, for the
        dashboard); raises `StoreError`."""
        names = sorted({*teams, *(r.team for r in self.state.snapshot.keys.values())})
        names += [s for (scope, s) in self.state.snapshot.overrides if scope == "team"]
        names = sorted(set(names))
        keys = [book_keys("", team, month)[1] for team in names]
        books = await self.state.store.read_books(keys)
        return {
            team: book.get("usd_micros", 0) / 1_000_000
            for team, book in zip(names, books, strict=True)
        }

    async def create_key(self, body: Mapping[str, Any], actor: Actor) -> Created:
        """A new key for a user (at most `MAX_KEYS_PER_USER` live ones each)."""
        asked: KeyCreate = parse(KeyCreate, body)
        for param in ("user", "team", "note"):
            not_a_secret(getattr(asked, param), param)
        expires = _epoch(asked.expires_at)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, Created]:
            if expires is not None and expires <= now:
                raise InvalidRequest(
                    "expires_at: must be in the future", code="invalid_value", param="expires_at"
                )
            known = known_teams(self._teams, snapshot, now)
            check_team(asked.team, known, new_team=asked.new_team)
            if not asked.existing_user:
                check_user(asked.user, self._users, snapshot, now, actor)
            live = [r for r in snapshot.keys.values() if r.user == asked.user and r.live(now)]
            if len(live) >= MAX_KEYS_PER_USER:
                raise InvalidRequest(
                    f"user: {asked.user} already has {MAX_KEYS_PER_USER} live keys; revoke one "
                    "first.",
                    code="too_many_keys",
                    param="user",
                )
            secret = new_key()
            record = KeyRecord(
                "key_" + secrets.token_hex(8), asked.user, asked.team, asked.role,
                key_digest(secret), now, actor.user, expires, asked.note,
            )  # fmt: skip
            return _key_change("key.create", None, record), Created(record, secret)

        created: Created = await self._write(decide, actor)
        return created

    async def revoke_key(self, key_id: str, actor: Actor) -> KeyRecord:
        """Revoke a key (and its previous secret); revoking a revoked key changes nothing."""
        checked_key_id(key_id)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change | None, KeyRecord]:
            record = _existing(snapshot, key_id)
            if record.revoked_at is not None:
                return None, record
            after = replace(record, revoked_at=now)
            return _key_change("key.revoke", record, after), after

        revoked: KeyRecord = await self._write(decide, actor)
        return revoked

    async def rotate_key(self, key_id: str, body: Mapping[str, Any], actor: Actor) -> Created:
        """A new secret for a live key; the old one works `grace_seconds` more, then stops."""
        checked_key_id(key_id)
        grace = parse(KeyRotate, body).grace_seconds

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, Created]:
            record = _existing(snapshot, key_id)
            if record.revoked_at is not None:
                raise InvalidRequest(
                    f"Key {key_id} is revoked: create a new one.", code="key_revoked"
                )
            if not record.live(now):
                raise InvalidRequest(
                    f"Key {key_id} is expired: create a new one.", code="key_expired"
                )
            secret = new_key()
            after = replace(
                record,
                key_sha256=key_digest(secret),
                previous_sha256=record.key_sha256 if grace else None,
                previous_expires_at=now + grace if grace else None,
            )
            return _key_change("key.rotate", record, after), Created(after, secret)

        rotated: Created = await self._write(decide, actor)
        return rotated

    async def set_rules(
        self, scope: Scope, subject: str, body: Mapping[str, Any], actor: Actor
    ) -> RulesSet:
        """Replace the subject's runtime rules as a whole (each overrides the config's rule
        of its unit and window); a team pool may be opened so, but not under a case variant
        of a known team's name."""
        name(subject, scope)
        asked: RulesPut = parse(RulesPut, body)
        if len({(r.unit, r.window) for r in asked.rules}) != len(asked.rules):
            raise InvalidRequest(
                "rules: two rules with the same unit and window", code="duplicate_rule",
                param="rules",
            )  # fmt: skip
        rules = tuple(
            QuotaRule(unit=r.unit, limit=float(r.limit), window=r.window) for r in asked.rules
        )

        def decide(snapshot: Snapshot, now: float) -> tuple[Change | None, RulesSet]:
            if scope == "team":
                check_team(subject, known_teams(self._teams, snapshot, now), new_team=True)
            before = snapshot.overrides.get((scope, subject))
            if before == rules:
                return None, RulesSet(rules, before)
            return _rules_change("quota.set", scope, subject, before, rules), RulesSet(
                rules, before
            )

        result: RulesSet = await self._write(decide, actor)
        return result

    async def unset_rules(self, scope: Scope, subject: str, actor: Actor) -> tuple[QuotaRule, ...]:
        """Drop the subject's runtime rules: the config's apply again. The dropped rules."""
        name(subject, scope)

        def decide(snapshot: Snapshot, now: float) -> tuple[Change, tuple[QuotaRule, ...]]:
            before = snapshot.overrides.get((scope, subject))
            if before is None:
                raise NotFound(f"No runtime quota rules for {scope} {subject}.")
            return _rules_change("quota.unset", scope, subject, before, None), before

        dropped: tuple[QuotaRule, ...] = await self._write(decide, actor)
        return dropped


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _existing(snapshot: Snapshot, key_id: str) -> KeyRecord:
    record = snapshot.keys.get(key_id)
    if record is None:
        raise NotFound(f"No key with id {key_id[:64]}.")
    return record


def _key_change(action: str, before: KeyRecord | None, after: KeyRecord) -> Change:
    audit = {
        "action": action,
        "target": after.id,
        "before": before.public() if before else None,
        "after": after.public(),
    }
    return Change("keys", after.id, after.encode(), audit)


def rule_dicts(rules: tuple[QuotaRule, ...] | None) -> list[dict[str, Any]] | None:
    """Rules as answers and the audit show them."""
    if rules is None:
        return None
    return [{"unit": r.unit, "window": r.window, "limit": _number(r.limit)} for r in rules]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _rules_change(
    action: str,
    scope: Scope,
    subject: str,
    before: tuple[QuotaRule, ...] | None,
    after: tuple[QuotaRule, ...] | None,
) -> Change:
    target = quota_field(scope, subject)
    audit = {"action": action, "target": target, "before": rule_dicts(before)}
    audit["after"] = rule_dicts(after)
    return Change("quotas", target, encode_rules(after) if after else None, audit)
