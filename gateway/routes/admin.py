"""The admin API: runtime keys, runtime quota rules, the audit trail, usage for chargeback.

Every route authenticates (401) and needs the admin role (403) before it reads a body or
the store. Bodies are JSON objects of at most `MAX_BODY_BYTES`; every refusal is an
OpenAI-shaped error and changes nothing. See docs/admin-api.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.operations import Actor, AdminOps, Created, RulesSet, rule_dicts
from gateway.admin.records import AuditQuery, KeyRecord
from gateway.auth.authenticator import require_admin
from gateway.auth.base import Identity
from gateway.errors import InvalidRequest, RequestTooLarge, StoreUnavailable
from gateway.quota.books import By, rows
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
    return services.admin, Actor(identity.user, request.state.request_id, peer)


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


def _month(request: Request) -> str:
    raw = request.query_params.get("month") or ""
    found = _MONTH.fullmatch(raw)
    if found is None:
        raise InvalidRequest("month: YYYY-MM, e.g. 2026-11", code="invalid_value", param="month")
    return found.group(1) + found.group(2)


async def usage(request: Request) -> Response:
    """GET /admin/usage?month=YYYY-MM&by=team|user: the month's books, for chargeback."""
    ops, _ = await _admin(request)
    stamp, by_raw = _month(request), request.query_params.get("by", "team")
    if by_raw not in ("team", "user"):
        raise InvalidRequest("by: team or user", code="invalid_value", param="by")
    by: By = "team" if by_raw == "team" else "user"
    data = rows(await _store_errors(ops.state.store.books(by, stamp)))
    month = f"{stamp[:4]}-{stamp[4:]}"
    return JSONResponse({"object": "list", "month": month, "by": by, "data": data})


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
    Route("/admin/audit", audit, methods=["GET"]),
    Route("/admin/usage", usage, methods=["GET"]),
]
