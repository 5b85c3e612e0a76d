"""GET /v1/quota (the caller's own rules) and GET /admin/quotas (everyone's, admin only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.operations import rule_dicts
from gateway.auth.authenticator import require_admin
from gateway.auth.base import Identity
from gateway.quota.counters import RuleState
from gateway.quota.policy import Scope
from gateway.services import Services


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> int | float:
    # 60, not 60.0: limits and counts of requests and images are whole numbers.
    return int(value) if float(value).is_integer() else value


def _rule(services: Services, state: RuleState) -> dict[str, Any]:
    scope: Scope = "user" if state.scope == "user" else "team"
    source = services.admin.state.source(scope, state.subject, state.unit, state.window)
    return {
        "scope": state.scope,
        "subject": state.subject,
        "unit": state.unit,
        "window": state.window,
        "limit": _number(state.limit),
        "used": _number(state.used),
        "remaining": _number(state.remaining),
        "resets_at": _iso(state.resets_at),
        "source": source,
    }


async def _principal(services: Services, identity: Identity) -> dict[str, Any]:
    states = await services.metering.ledger.states(identity)
    rules = [_rule(services, s) for s in states]
    return {"user": identity.user, "team": identity.team, "rules": rules}


async def _caller(request: Request, services: Services) -> Identity:
    identity = await services.door.auth.authenticate(request)
    request.state.log.update(identity.log_fields())
    return identity


async def own_quota(request: Request) -> Response:
    """The caller's rules: limit, used, remaining and reset time of each."""
    services: Services = request.app.state.services
    return JSONResponse(await _principal(services, await _caller(request, services)))


async def all_quotas(request: Request) -> Response:
    """Every configured principal's rules (and every runtime key's), every team pool's, and
    the runtime rules as set. Admin role only.

    Callers known only to the IdP or a trusted proxy are not listed: the gateway learns of
    them one request at a time (their runtime rules are in `overrides`).
    """
    services: Services = request.app.state.services
    require_admin(await _caller(request, services))
    runtime = services.admin.state
    principals = [
        await _principal(services, identity) for identity in services.door.auth.identities()
    ]
    teams = []
    for team in sorted(runtime.policy().quotas.teams):
        states = await services.metering.ledger.team_states(team)
        teams.append({"team": team, "rules": [_rule(services, s) for s in states]})
    overrides = [
        {"scope": scope, "subject": subject, "rules": rule_dicts(rules)}
        for (scope, subject), rules in sorted(runtime.snapshot.overrides.items())
    ]
    return JSONResponse(
        {
            "principals": principals,
            "teams": teams,
            "overrides": overrides,
            "timezone": services.metering.ledger.calendar.timezone,
        }
    )
