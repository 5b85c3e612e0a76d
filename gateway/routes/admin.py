"""The admin API: runtime keys, runtime quota rules, budget alerts (their webhooks, the
thresholds, the delivery history), the audit trail, usage for chargeback.

Every route authenticates (401) and needs the admin role (403) before it reads a body or
the store. Bodies are JSON objects of at most `MAX_BODY_BYTES`; every refusal is an
OpenAI-shaped error and changes nothing. See docs/admin-api.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.operations import Actor, AdminOps, Created, RulesSet, rule_dicts
from gateway.admin.records import AuditQuery, KeyRecord, Webhook
from gateway.admin.usage import month_usage
from gateway.auth.authenticator import require_admin
from gateway.auth.base import Identity
from gateway.errors import InvalidRequest, NotFound, RequestTooLarge, StoreUnavailable
from gateway.quota.books import By
from gateway.quota.policy import Scope
from gateway.services import Services
from gateway.store.base import StoreError

MAX_BODY_BYTES = 64 * 1024
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


async def _admin(request: Request) -> tuple[AdminOps, Actor]:
    """The admin plane and the calling admin; 401 without credentials, 403 without the role."""
    services: Services = request.app.state.services
    identity: Identity = await services.door.auth.authenticate(request)
    request.state.log.update(identity.log_fields())
    require_admin(identity)
    peer = request.client.host if request.client else None
    actor = Actor(identity.user, request.state.request_id, peer, identity.credential())
    return services.admin, actor


async def _body(request: Request) -> Mapping[str, Any]:
    """The JSON object sent (an empty body is `{}`); 400 or 413 otherwise."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise RequestTooLarge(f"Admin request bodies are limited to {MAX_BODY_BYTES} bytes.")
    try:
        body = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    return body


def _key(record: KeyRecord, used: Mapping[str, float], secret: str | None = None) -> dict[str, Any]:
    out = record.public(used.get(record.id))
    if secret is not None:
        out["key"] = secret  # shown this once: the gateway keeps only its SHA-256
    return out


async def _store_errors(work: Any) -> Any:
    try:
        return await work
    except StoreError as exc:
        raise StoreUnavailable("The admin state store is unavailable. Retry shortly.") from exc


async def create_key(request: Request) -> Response:
    """POST /admin/keys: a new key; its secret is in this answer and nowhere else."""
    ops, actor = await _admin(request)
    created: Created = await _store_errors(ops.create_key(await _body(request), actor))
    return JSONResponse(_key(created.record, {}, created.secret), status_code=201)


async def list_keys(request: Request) -> Response:
    """GET /admin/keys[?user=&team=]: every runtime key, oldest first, without secrets."""
    ops, _ = await _admin(request)
    user, team = request.query_params.get("user"), request.query_params.get("team")
    snapshot = await _store_errors(ops.state.store.snapshot())
    used = {**await _store_errors(ops.state.store.last_used()), **ops.state.unflushed_use()}
    records = sorted(snapshot.keys.values(), key=lambda r: (r.created_at, r.id))
    data = [
        _key(r, used)
        for r in records
        if (user is None or r.user == user) and (team is None or r.team == team)
    ]
    return JSONResponse({"object": "list", "data": data})


async def revoke_key(request: Request) -> Response:
    """DELETE /admin/keys/{id}: refused everywhere within a second."""
    ops, actor = await _admin(request)
    record = await _store_errors(ops.revoke_key(request.path_params["id"], actor))
    return JSONResponse(_key(record, {}))


async def rotate_key(request: Request) -> Response:
    """POST /admin/keys/{id}/rotate: a new secret; the old one works `grace_seconds` more."""
    ops, actor = await _admin(request)
    body = await _body(request)
    created: Created = await _store_errors(ops.rotate_key(request.path_params["id"], body, actor))
    return JSONResponse(_key(created.record, {}, created.secret))


def _scope(request: Request) -> Scope:
    return "user" if request.url.path.startswith("/admin/quotas/users/") else "team"


async def set_rules(request: Request) -> Response:
    """PUT /admin/quotas/{users|teams}/{name}: the subject's runtime rules, replaced as a
    whole; the answer names the ones replaced."""
    ops, actor = await _admin(request)
    scope, subject = _scope(request), request.path_params["name"]
    done: RulesSet = await _store_errors(ops.set_rules(scope, subject, await _body(request), actor))
    return JSONResponse(
        {
            "scope": scope,
            "subject": subject,
            "rules": rule_dicts(done.rules),
            "replaced": rule_dicts(done.replaced),
        }
    )


async def unset_rules(request: Request) -> Response:
    """DELETE /admin/quotas/{users|teams}/{name}: back to the config's rules."""
    ops, actor = await _admin(request)
    scope, subject = _scope(request), request.path_params["name"]
    dropped = await _store_errors(ops.unset_rules(scope, subject, actor))
    return JSONResponse({"scope": scope, "subject": subject, "removed": rule_dicts(dropped)})


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(
            f"{name}: an integer from {low} to {high}", code="invalid_value", param=name
        )
    return int(raw)


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name}: an ISO 8601 time, e.g. 2026-11-01T00:00:00Z", code="invalid_value",
            param=name,
        ) from None  # fmt: skip
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


async def audit(request: Request) -> Response:
    """GET /admin/audit: admin changes, newest first, filtered, a page at a time."""
    ops, _ = await _admin(request)
    params = request.query_params
    cursor = params.get("before")
    if cursor is not None and not re.fullmatch(r"\d{1,15}-\d{1,15}", cursor):
        raise InvalidRequest("before: a next_before value", code="invalid_value", param="before")
    query = AuditQuery(
        limit=_int_param(request, "limit", 1, 500) or 50,
        before=cursor,
        since_ms=_time_param(request, "since"),
        until_ms=_time_param(request, "until"),
        actor=params.get("actor"),
        action=params.get("action"),
        target=params.get("target"),
    )
    entries = await _store_errors(ops.state.store.audit(query))
    more = entries[-1]["id"] if len(entries) == query.limit else None
    return JSONResponse({"object": "list", "data": entries, "next_before": more})


def _month(request: Request) -> date:
    raw = request.query_params.get("month") or ""
    found = _MONTH.fullmatch(raw)
    if found is None:
        raise InvalidRequest("month: YYYY-MM, e.g. 2026-11", code="invalid_value", param="month")
    return date(int(found.group(1)), int(found.group(2)), 1)


def _choice(request: Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query_params.get(name, choices[0])
    if value not in choices:
        raise InvalidRequest(f"{name}: {' or '.join(choices)}", code="invalid_value", param=name)
    return value


async def usage(request: Request) -> Response:
    """GET /admin/usage?month=YYYY-MM&by=team|user[&period=day]: the month's books (or its
    days), in the company's time zone, for chargeback and the console's chart."""
    ops, _ = await _admin(request)
    first = _month(request)
    by: By = "user" if _choice(request, "by", ("team", "user")) == "user" else "team"
    daily = _choice(request, "period", ("month", "day")) == "day"
    ledger = request.app.state.services.metering.ledger
    answer = month_usage(ops.state.store, ledger.calendar, by, first, ledger.clock(), daily)
    return JSONResponse(await _store_errors(answer))


def _webhook(hook: Webhook, secret: str | None = None) -> dict[str, Any]:
    out = hook.public()
    if secret is not None:
        out["secret"] = secret  # shown this once: receivers verify signatures with it
    return out


async def create_webhook(request: Request) -> Response:
    """POST /admin/webhooks: a webhook for budget alerts; its signing secret is in this
    answer (and that of a rotation) only."""
    _, actor = await _admin(request)
    alerting = request.app.state.services.alerting
    created = await _store_errors(alerting.ops.create_webhook(await _body(request), actor))
    return JSONResponse(_webhook(created.webhook, created.secret), status_code=201)


async def list_webhooks(request: Request) -> Response:
    """GET /admin/webhooks: every webhook, oldest first, without secrets."""
    ops, _ = await _admin(request)
    snapshot = await _store_errors(ops.state.store.snapshot())
    hooks = sorted(snapshot.webhooks.values(), key=lambda h: (h.created_at, h.id))
    return JSONResponse({"object": "list", "data": [_webhook(h) for h in hooks]})


async def delete_webhook(request: Request) -> Response:
    """DELETE /admin/webhooks/{id}: no more deliveries to it."""
    _, actor = await _admin(request)
    alerting = request.app.state.services.alerting
    hook = await _store_errors(alerting.ops.delete_webhook(request.path_params["id"], actor))
    return JSONResponse(_webhook(hook))


async def rotate_webhook(request: Request) -> Response:
    """POST /admin/webhooks/{id}/rotate: a new signing secret, in force at once."""
    _, actor = await _admin(request)
    alerting = request.app.state.services.alerting
    done = await _store_errors(alerting.ops.rotate_webhook(request.path_params["id"], actor))
    return JSONResponse(_webhook(done.webhook, done.secret))


async def send_test(request: Request) -> Response:
    """POST /admin/webhooks/{id}/test: queue a signed test message (202); its outcome is in
    the delivery history."""
    ops, _ = await _admin(request)
    snapshot = await _store_errors(ops.state.store.snapshot())
    hook = snapshot.webhooks.get(request.path_params["id"])
    if hook is None:
        raise NotFound(f"No webhook with id {request.path_params['id'][:64]}.")
    delivery = request.app.state.services.alerting.notifier.test(hook)
    return JSONResponse({"delivery": delivery, "webhook": hook.id}, status_code=202)


async def deliveries(request: Request) -> Response:
    """GET /admin/deliveries[?webhook=&limit=]: delivery attempts, newest first."""
    ops, _ = await _admin(request)
    limit = _int_param(request, "limit", 1, 500) or 100
    webhook = request.query_params.get("webhook")
    data = await _store_errors(ops.state.store.deliveries(webhook, limit))
    return JSONResponse({"object": "list", "data": data})


async def list_alerts(request: Request) -> Response:
    """GET /admin/alerts: every subject's thresholds and webhooks."""
    ops, _ = await _admin(request)
    snapshot = await _store_errors(ops.state.store.snapshot())
    data = [
        {"scope": scope, "subject": subject, **rule.public()}
        for (scope, subject), rule in sorted(snapshot.alerts.items())
    ]
    return JSONResponse({"object": "list", "data": data})


def _alert_scope(request: Request) -> Scope:
    return "user" if request.url.path.startswith("/admin/alerts/users/") else "team"


async def set_alerts(request: Request) -> Response:
    """PUT /admin/alerts/{users|teams}/{name}: the subject's thresholds and webhooks."""
    _, actor = await _admin(request)
    scope, subject = _alert_scope(request), request.path_params["name"]
    ops = request.app.state.services.alerting.ops
    rule = await _store_errors(ops.set_alerts(scope, subject, await _body(request), actor))
    return JSONResponse({"scope": scope, "subject": subject, **rule.public()})


async def unset_alerts(request: Request) -> Response:
    """DELETE /admin/alerts/{users|teams}/{name}: no more alerts for the subject."""
    _, actor = await _admin(request)
    scope, subject = _alert_scope(request), request.path_params["name"]
    ops = request.app.state.services.alerting.ops
    rule = await _store_errors(ops.unset_alerts(scope, subject, actor))
    return JSONResponse({"scope": scope, "subject": subject, "removed": rule.public()})


ROUTES = [
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys/{id}", revoke_key, methods=["DELETE"]),
    Route("/admin/keys/{id}/rotate", rotate_key, methods=["POST"]),
    # `path`: a name may hold a `/` (`PUT /admin/quotas/users/a%2Fb` is user a/b).
    Route("/admin/quotas/users/{name:path}", set_rules, methods=["PUT"]),
    Route("/admin/quotas/users/{name:path}", unset_rules, methods=["DELETE"]),
    Route("/admin/quotas/teams/{name:path}", set_rules, methods=["PUT"]),
    Route("/admin/quotas/teams/{name:path}", unset_rules, methods=["DELETE"]),
    Route("/admin/webhooks", create_webhook, methods=["POST"]),
    Route("/admin/webhooks", list_webhooks, methods=["GET"]),
    Route("/admin/webhooks/{id}", delete_webhook, methods=["DELETE"]),
    Route("/admin/webhooks/{id}/rotate", rotate_webhook, methods=["POST"]),
    Route("/admin/webhooks/{id}/test", send_test, methods=["POST"]),
    Route("/admin/deliveries", deliveries, methods=["GET"]),
    Route("/admin/alerts", list_alerts, methods=["GET"]),
    Route("/admin/alerts/users/{name:path}", set_alerts, methods=["PUT"]),
    Route("/admin/alerts/users/{name:path}", unset_alerts, methods=["DELETE"]),
    Route("/admin/alerts/teams/{name:path}", set_alerts, methods=["PUT"]),
    Route("/admin/alerts/teams/{name:path}", unset_alerts, methods=["DELETE"]),
    Route("/admin/audit", audit, methods=["GET"]),
    Route("/admin/usage", usage, methods=["GET"]),
]
