"""The admin API in-process, on the in-process store and on a real Redis: keys, quota rules,
the audit trail, and who may use any of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from support.config import auth
from support.requests import assert_openai_error, post_variation

ADMIN = auth("grafana")
RULE = {"unit": "images", "window": "day", "limit": 5}
ROUTES = [
    ("POST", "/admin/keys"),
    ("GET", "/admin/keys"),
    ("DELETE", "/admin/keys/key_0"),
    ("POST", "/admin/keys/key_0/rotate"),
    ("PUT", "/admin/quotas/users/alice"),
    ("DELETE", "/admin/quotas/users/alice"),
    ("PUT", "/admin/quotas/teams/vision"),
    ("DELETE", "/admin/quotas/teams/vision"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/usage?month=2026-01"),
    ("GET", "/admin/quotas"),
]


@pytest.fixture(params=["memory", "redis"])
def admin_client(
    request: pytest.FixtureRequest, make_client: Callable[..., TestClient]
) -> TestClient:
    """The gateway on the in-process store, or on a real Redis."""
    if request.param == "memory":
        return make_client()
    return make_client(env={"REDIS_URL": request.getfixturevalue("clean_redis")})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/admin/keys", json={"user": "dave", "team": "vision", **body}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def audit(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/admin/audit", headers=ADMIN).json()["data"])


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_admin_route_refuses_callers_without_a_key(
    client: TestClient, method: str, path: str
) -> None:
    """No credentials: 401 invalid_api_key, before anything is read or changed."""
    response = client.request(method, path, json={"user": "x", "team": "y"})
    assert_openai_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_admin_route_refuses_non_admins(client: TestClient, method: str, path: str) -> None:
    """A valid key without the admin role: 403 permission_denied, and no audit entry."""
    response = client.request(method, path, json={"user": "x", "team": "y"}, headers=auth("alice"))
    assert_openai_error(response, 403, "permission_denied")
    assert audit(client) == []


def test_a_created_key_works_at_once_and_its_secret_is_shown_once(admin_client: TestClient) -> None:
    """The new key calls the product as its user; listings never show a secret or digest."""
    created = create(admin_client, note="launch")
    assert created["key"].startswith("gwk_") and created["id"].startswith("key_")
    assert created["created_by"] == "grafana" and created["revoked_at"] is None
    assert post_variation(admin_client, user="alice").status_code == 200
    quota = admin_client.get("/v1/quota", headers=bearer(created["key"]))
    assert quota.status_code == 200 and quota.json()["user"] == "dave"
    listed = admin_client.get("/admin/keys?user=dave", headers=ADMIN).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in str(listed) and "sha256" not in str(listed)
    assert listed[0]["last_used_at"] is not None


def test_a_revoked_key_is_refused(admin_client: TestClient) -> None:
    """After DELETE the key gets 401; revoking again changes nothing and audits nothing."""
    created = create(admin_client)
    assert admin_client.delete(f"/admin/keys/{created['id']}", headers=ADMIN).status_code == 200
    assert_openai_error(
        admin_client.get("/v1/quota", headers=bearer(created["key"])), 401, "invalid_api_key"
    )
    again = admin_client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["revoked_at"] is not None
    assert [e["action"] for e in audit(admin_client)] == ["key.revoke", "key.create"]


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(admin_client: TestClient) -> None:
    """Rotated with grace: both secrets work; rotated again without: only the newest does."""
    created = create(admin_client)
    path = f"/admin/keys/{created['id']}/rotate"
    first = admin_client.post(path, json={"grace_seconds": 600}, headers=ADMIN).json()
    assert first["id"] == created["id"] and first["key"] != created["key"]
    for key in (created["key"], first["key"]):
        assert admin_client.get("/v1/quota", headers=bearer(key)).status_code == 200
    second = admin_client.post(path, headers=ADMIN).json()
    for key in (created["key"], first["key"]):
        assert admin_client.get("/v1/quota", headers=bearer(key)).status_code == 401
    assert admin_client.get("/v1/quota", headers=bearer(second["key"])).status_code == 200


def test_a_rotated_admin_secret_in_its_grace_serves_traffic_only(admin_client: TestClient) -> None:
    """The old secret of a rotated admin key still calls the product during its grace, but
    every admin route refuses it (403, saying why): it cannot rotate the key again, create
    a key or set a quota; the new secret can."""
    created = create(admin_client, user="ops-bot", team="ops", role="admin")
    path = f"/admin/keys/{created['id']}/rotate"
    rotated = admin_client.post(path, json={"grace_seconds": 300}, headers=ADMIN).json()
    old = bearer(created["key"])
    assert admin_client.get("/v1/quota", headers=old).status_code == 200
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}
    attempts = [
        admin_client.post(path, json={"grace_seconds": 0}, headers=old),
        admin_client.post(
            "/admin/keys", json={"user": "eve", "team": "ops", "role": "admin"}, headers=old
        ),
        admin_client.put("/admin/quotas/users/eve", json=rules, headers=old),
        admin_client.get("/admin/keys", headers=old),
    ]
    for refused in attempts:
        assert_openai_error(refused, 403, "permission_denied")
        assert "grace" in refused.json()["error"]["message"]
    assert [e["action"] for e in audit(admin_client)] == ["key.rotate", "key.create"]
    assert admin_client.get("/admin/keys", headers=bearer(rotated["key"])).status_code == 200


def test_a_key_secret_typed_where_an_id_belongs_never_reaches_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """DELETE or rotate of `/admin/keys/gwk_...` answers 400 saying a secret is not an id,
    changes nothing, and no log line holds the secret (the access log's path neither)."""
    created = create(client)
    secret = created["key"]
    with caplog.at_level(logging.DEBUG):
        refused = [
            client.delete(f"/admin/keys/{secret}", headers=ADMIN),
            client.post(f"/admin/keys/{secret}/rotate", headers=ADMIN),
        ]
        unknown = client.get(f"/v1/keys/{secret}", headers=ADMIN)
    for response in refused:
        assert_openai_error(response, 400, "invalid_value", "id")
        assert "secret, not" in response.json()["error"]["message"]
        assert secret not in response.text
    assert unknown.status_code == 404
    # The test's own HTTP client logs the URLs it calls; everything else is the gateway's.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "/admin/keys/[redacted]" in logged
    assert secret not in logged and secret[4:] not in logged
    assert client.get("/v1/quota", headers=bearer(secret)).status_code == 200
    assert [e["action"] for e in audit(client)] == ["key.create"]


def test_every_audit_entry_names_the_credential_beside_the_user(admin_client: TestClient) -> None:
    """An entry says which key acted: `config` for the config's key of that user, the key id
    for a key made at run time, so an admin key made for a name is told from its owner."""
    bot = create(admin_client, user="ops-bot", team="ops", role="admin")
    made = admin_client.post(
        "/admin/keys", json={"user": "frank", "team": "ops"}, headers=bearer(bot["key"])
    )
    assert made.status_code == 201, made.text
    entries = audit(admin_client)
    assert [(e["actor"], e["credential"]) for e in entries] == [
        ("ops-bot", {"source": "key", "key_id": bot["id"]}),
        ("grafana", {"source": "key", "key_id": "config"}),
    ]


def test_a_key_for_a_name_someone_else_holds_needs_the_admin_to_say_so(
    admin_client: TestClient,
) -> None:
    """A key for a configured principal's name, or for a user whose live keys another admin
    made, is refused (409 user_exists, not retried, nothing written) unless the body says
    `"existing_user": true`; an admin adding a key for a user of their own needs nothing."""
    create(admin_client)  # dave, by grafana
    bot = create(admin_client, user="ops-bot", team="ops", role="admin", existing_user=True)
    taken = [
        admin_client.post("/admin/keys", json={"user": "carol", "team": "audio"}, headers=ADMIN),
        admin_client.post(
            "/admin/keys", json={"user": "dave", "team": "vision"}, headers=bearer(bot["key"])
        ),
    ]
    for refused in taken:
        assert_openai_error(refused, 409, "user_exists", "user")
        assert refused.headers["x-should-retry"] == "false"
        assert "existing_user" in refused.json()["error"]["message"]
    assert [e["action"] for e in audit(admin_client)] == ["key.create", "key.create"]
    create(admin_client)  # a second key for grafana's own dave
    said = create(admin_client, user="carol", team="audio", existing_user=True)
    assert admin_client.get("/v1/quota", headers=bearer(said["key"])).json()["user"] == "carol"


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/admin/keys", {"user": "{key}", "team": "vision"}, "user"),
        ("POST", "/admin/keys", {"user": "dave", "team": "vision", "note": "was {key}"}, "note"),
        ("PUT", "/admin/quotas/users/{key}", {"rules": [RULE]}, "user"),
        ("PUT", "/admin/quotas/teams/{key}", {"rules": [RULE]}, "team"),
    ],
)
def test_a_key_secret_typed_where_a_name_belongs_is_refused_before_any_log(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: dict[str, Any],
    param: str,
) -> None:
    """A key's secret pasted as a user or team name, or into a note, is refused (400, not
    repeated) before it can reach the audit trail or any log line."""
    secret = create(client)["key"]
    filled = {k: v.replace("{key}", secret) if isinstance(v, str) else v for k, v in body.items()}
    with caplog.at_level(logging.DEBUG):
        refused = client.request(method, path.replace("{key}", secret), json=filled, headers=ADMIN)
    assert_openai_error(refused, 400, "invalid_value", param)
    assert secret not in refused.text and "secret" in refused.json()["error"]["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert secret not in logged
    assert [e["action"] for e in audit(client)] == ["key.create"]


def test_the_audit_has_one_entry_per_change_and_no_secret(admin_client: TestClient) -> None:
    """Each change is one entry (actor, action, target, before, after, time, request id,
    source address); no secret appears; filters and paging work."""
    created = create(admin_client)
    admin_client.post(f"/admin/keys/{created['id']}/rotate", headers=ADMIN)
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}
    admin_client.put("/admin/quotas/users/alice", json=rules, headers=ADMIN)
    admin_client.put("/admin/quotas/users/alice", json=rules, headers=ADMIN)  # no change
    admin_client.delete("/admin/quotas/users/alice", headers=ADMIN)
    entries = audit(admin_client)
    assert [e["action"] for e in entries] == [
        "quota.unset",
        "quota.set",
        "key.rotate",
        "key.create",
    ]
    for entry in entries:
        assert {"id", "actor", "action", "target", "before", "after", "time", "request_id"} <= set(
            entry
        )
        assert entry["actor"] == "grafana" and entry["request_id"].startswith("req_")
        assert "source_address" in entry
    assert "gwk_" not in str(entries)
    assert entries[1]["after"] == [{"unit": "images", "window": "day", "limit": 5}]
    page = admin_client.get("/admin/audit?limit=2", headers=ADMIN).json()
    rest = admin_client.get(f"/admin/audit?before={page['next_before']}", headers=ADMIN).json()
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in entries]
    only = admin_client.get("/admin/audit?action=key.create", headers=ADMIN).json()["data"]
    assert [e["target"] for e in only] == [created["id"]]


def test_a_runtime_rule_replaces_the_configs_and_says_so(
    make_client: Callable[..., TestClient],
) -> None:
    """A runtime images/day rule replaces the config's; /v1/quota shows source runtime, the
    rest config; the new limit is enforced at once; DELETE restores the config's."""
    client = make_client(
        {"quotas": {"default": [{"unit": "images", "limit": 1, "window": "day"},
                                {"unit": "requests", "limit": 100, "window": "minute"}]}}
    )  # fmt: skip
    assert post_variation(client).status_code == 200
    assert post_variation(client).status_code == 429
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 3}]}
    assert client.put("/admin/quotas/users/alice", json=rules, headers=ADMIN).status_code == 200
    shown = {
        (r["unit"], r["limit"], r["source"])
        for r in client.get("/v1/quota", headers=auth()).json()["rules"]
    }
    assert shown == {("images", 3, "runtime"), ("requests", 100, "config")}
    assert post_variation(client).status_code == 200
    assert client.delete("/admin/quotas/users/alice", headers=ADMIN).status_code == 200
    assert post_variation(client).status_code == 429
    everyone = client.get("/admin/quotas", headers=ADMIN).json()
    assert everyone["overrides"] == []


def test_a_runtime_team_pool_is_enforced(make_client: Callable[..., TestClient]) -> None:
    """A team rule set at run time pools the team's members, and is listed as a team."""
    client = make_client()
    rules = {"rules": [{"unit": "requests", "window": "day", "limit": 1}]}
    assert client.put("/admin/quotas/teams/vision", json=rules, headers=ADMIN).status_code == 200
    assert post_variation(client, user="alice").status_code == 200
    assert post_variation(client, user="bob").status_code == 429
    teams = client.get("/admin/quotas", headers=ADMIN).json()["teams"]
    assert [(t["team"], t["rules"][0]["source"]) for t in teams] == [("vision", "runtime")]


def _future(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


BAD_KEYS = [
    ({"user": "has space", "team": "vision"}, "invalid_value", "user"),
    ({"user": "dave", "team": "Vision"}, "invalid_value", "team"),
    ({"user": "dave", "team": "Vision", "new_team": True}, "invalid_value", "team"),
    ({"user": "dave", "team": "research"}, "invalid_value", "team"),
    ({"user": "dave", "team": "research", "new_team": "yes"}, "invalid_value", "new_team"),
    ({"user": "dave", "team": "{vision}"}, "invalid_value", "team"),
    ({"user": "dave"}, "missing_required_parameter", "team"),
    ({"user": "dave", "team": "vision", "role": "root"}, "invalid_value", "role"),
    (
        {"user": "dave", "team": "vision", "expires_at": "2001-01-01T00:00:00Z"},
        "invalid_value",
        "expires_at",
    ),
    ({"user": "dave", "team": "vision", "expires_at": "soon"}, "invalid_value", "expires_at"),
    # One form only: a JSON number (seconds? milliseconds?) is refused, so is a date alone.
    ({"user": "dave", "team": "vision", "expires_at": 4102444800}, "invalid_value", "expires_at"),
    ({"user": "dave", "team": "vision", "expires_at": "4102444800"}, "invalid_value", "expires_at"),
    ({"user": "dave", "team": "vision", "expires_at": "2100-01-01"}, "invalid_value", "expires_at"),
    ({"user": "dave", "team": "vision", "expires_at": True}, "invalid_value", "expires_at"),
    ({"user": "dave", "team": "vision", "secret": "x"}, "unknown_parameter", "secret"),
]
BAD_RULES = [
    (
        {"rules": [{"unit": "images", "window": "day", "limit": -1}]},
        "invalid_value",
        "rules.0.limit",
    ),
    (
        {"rules": [{"unit": "images", "window": "day", "limit": "5"}]},
        "invalid_value",
        "rules.0.limit",
    ),
    (
        {"rules": [{"unit": "images", "window": "day", "limit": True}]},
        "invalid_value",
        "rules.0.limit",
    ),
    ({"rules": [{"unit": "tokens", "window": "day", "limit": 5}]}, "invalid_value", "rules.0.unit"),
    (
        {"rules": [{"unit": "images", "window": "year", "limit": 5}]},
        "invalid_value",
        "rules.0.window",
    ),
    ({"rules": []}, "invalid_value", "rules"),
    (
        {"rules": [{"unit": "images", "window": "day", "limit": 5}] * 2},
        "duplicate_rule",
        "rules",
    ),
]


@pytest.mark.parametrize(("body", "code", "param"), BAD_KEYS)
def test_bad_key_requests_are_refused_and_change_nothing(
    admin_client: TestClient, body: dict[str, Any], code: str, param: str
) -> None:
    """Names breaking the identity rules, a past or malformed expiry, unknown fields: 400."""
    response = admin_client.post("/admin/keys", json=body, headers=ADMIN)
    assert_openai_error(response, 400, code, param)
    assert admin_client.get("/admin/keys", headers=ADMIN).json()["data"] == []
    assert audit(admin_client) == []


def test_an_expiry_given_as_a_number_is_refused_saying_the_one_form(
    admin_client: TestClient,
) -> None:
    """`expires_at` as a JSON number: the 400 says the form it takes, with an example."""
    body = {"user": "dave", "team": "vision", "expires_at": 4102444800}
    answer = admin_client.post("/admin/keys", json=body, headers=ADMIN).json()
    assert answer["error"]["message"] == (
        "expires_at: must be an ISO 8601 date and time as a string, e.g. 2027-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(("body", "code", "param"), BAD_RULES)
def test_bad_quota_rules_are_refused_and_change_nothing(
    admin_client: TestClient, body: dict[str, Any], code: str, param: str
) -> None:
    """Negative or non-numeric limits, unknown units or windows, duplicates: 400."""
    response = admin_client.put("/admin/quotas/users/alice", json=body, headers=ADMIN)
    assert_openai_error(response, 400, code, param)
    assert admin_client.get("/admin/quotas", headers=ADMIN).json()["overrides"] == []
    assert audit(admin_client) == []


def test_other_bad_admin_requests_change_nothing(admin_client: TestClient) -> None:
    """Malformed JSON, a bad subject name, unknown keys and rules, rotating a revoked key,
    a 21st live key for one user: clear errors, nothing audited beyond the real changes."""
    bad = admin_client.post("/admin/keys", content=b"{nope", headers=ADMIN)
    assert_openai_error(bad, 400, "invalid_json")
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 1}]}
    assert_openai_error(
        admin_client.put("/admin/quotas/users/a%20b", json=rules, headers=ADMIN),
        400,
        "invalid_value",
        "user",
    )
    assert_openai_error(
        admin_client.delete("/admin/quotas/teams/vision", headers=ADMIN), 404, "not_found"
    )
    assert_openai_error(
        admin_client.delete("/admin/keys/key_nope", headers=ADMIN), 404, "not_found"
    )
    created = create(admin_client, expires_at=_future(30))
    admin_client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    rotated = admin_client.post(f"/admin/keys/{created['id']}/rotate", headers=ADMIN)
    assert_openai_error(rotated, 400, "key_revoked")
    for _ in range(20):
        create(admin_client)
    assert_openai_error(
        admin_client.post("/admin/keys", json={"user": "dave", "team": "vision"}, headers=ADMIN),
        400, "too_many_keys", "user",
    )  # fmt: skip
    assert len(audit(admin_client)) == 22
    for query in ("month=2026-13", "month=2026-01&by=x"):
        response = admin_client.get(f"/admin/usage?{query}", headers=ADMIN)
        assert response.status_code == 400


def test_a_runtime_admin_key_reaches_the_admin_api(client: TestClient) -> None:
    """A key created with role admin is an admin; one with role user is not."""
    admin = create(client, user="erin", team="ops", role="admin")
    assert client.get("/admin/keys", headers=bearer(admin["key"])).status_code == 200
    user = create(client, user="frank", team="ops")
    assert_openai_error(
        client.get("/admin/keys", headers=bearer(user["key"])), 403, "permission_denied"
    )


def test_the_demo_admin_key_opens_the_admin_api_on_the_sandbox(
    make_client: Callable[..., TestClient],
) -> None:
    """With the sandbox, the demo admin key (`make run`'s second key) is an admin: it lists
    keys and quotas; the demo key beside it is refused the admin API."""
    env = {"GATEWAY_DEMO_KEY": "gwk_demo_user_key", "GATEWAY_DEMO_ADMIN_KEY": "gwk_demo_admin_k"}
    client = make_client({"upstream": {"base_url": "sandbox"}}, env=env)
    admin = bearer(env["GATEWAY_DEMO_ADMIN_KEY"])
    assert client.get("/admin/keys", headers=admin).status_code == 200
    assert client.get("/admin/quotas", headers=admin).status_code == 200
    refused = client.get("/admin/keys", headers=bearer(env["GATEWAY_DEMO_KEY"]))
    assert_openai_error(refused, 403, "permission_denied")


def _gauges(client: TestClient) -> dict[tuple[str, str, str, str], float]:
    """gateway_quota_limit by (scope, subject, unit, window), from one scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "gateway_quota_limit"]
    return {
        (s.labels["scope"], s.labels["subject"], s.labels["unit"], s.labels["window"]): s.value
        for s in family.samples
    }


def test_users_made_at_run_time_are_on_the_quota_gauges(
    make_client: Callable[..., TestClient],
) -> None:
    """A runtime key's user (on the default rules), and a user known only by a runtime rule
    (an SSO user), get gateway_quota_limit{scope="user"} series like configured principals,
    so the per-user panels and GatewayQuotaNearlyExhausted cover them."""
    default = [{"unit": "requests", "limit": 60, "window": "minute"}]
    client = make_client({"quotas": {"default": default}})
    create(client, user="dave")
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 7}]}
    assert client.put("/admin/quotas/users/auth0|5f1c", json=rules, headers=ADMIN).is_success
    gauges = _gauges(client)
    assert gauges[("user", "alice", "requests", "minute")] == 60
    assert gauges[("user", "dave", "requests", "minute")] == 60
    assert gauges[("user", "auth0|5f1c", "images", "day")] == 7
    everyone = client.get("/admin/quotas", headers=ADMIN).json()
    assert "dave" in [p["user"] for p in everyone["principals"]]


def test_a_new_team_needs_saying_so_and_a_case_variant_is_refused_with_a_hint(
    admin_client: TestClient,
) -> None:
    """A key for a team nobody names is refused until `new_team` says so; then the team is
    known. `Vision` beside the configured `vision` is refused, naming it, even so."""
    refused = admin_client.post(
        "/admin/keys", json={"user": "dave", "team": "research"}, headers=ADMIN
    )
    assert_openai_error(refused, 400, "invalid_value", "team")
    assert "new_team" in refused.json()["error"]["message"]
    create(admin_client, team="research", new_team=True)
    create(admin_client, user="erin", team="research")  # known now: a live key names it
    twin = admin_client.post("/admin/keys", json={"user": "dave", "team": "Vision"}, headers=ADMIN)
    message = twin.json()["error"]["message"]
    assert "did you mean 'vision'" in message and "case-sensitive" in message
    assert not message.startswith("Value error")


def test_a_team_with_a_runtime_pool_takes_keys(admin_client: TestClient) -> None:
    """A team opened by giving it a runtime pool needs no `new_team` for its keys."""
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}
    assert admin_client.put("/admin/quotas/teams/research", json=rules, headers=ADMIN).is_success
    create(admin_client, team="research")


@pytest.mark.parametrize("name", ["auth0|5f1c9a", "a/b", "corp\\jdoe", "x" * 256])
def test_every_route_takes_every_name_the_rule_allows(admin_client: TestClient, name: str) -> None:
    """Subjects as identity providers issue them (with `|`, `/` or `\\`) work on every
    route: a key, its listing, a user's and a team's runtime rules (set, read back, unset)."""
    quoted = quote(name, safe="")
    created = create(admin_client, user=name)
    listed = admin_client.get("/admin/keys", params={"user": name}, headers=ADMIN).json()
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    rules = {"rules": [{"unit": "images", "window": "day", "limit": 5}]}
    for scope in ("users", "teams"):
        put = admin_client.put(f"/admin/quotas/{scope}/{quoted}", json=rules, headers=ADMIN)
        assert put.status_code == 200 and put.json()["subject"] == name
    everyone = admin_client.get("/admin/quotas", headers=ADMIN).json()
    assert {(o["scope"], o["subject"]) for o in everyone["overrides"]} == {
        ("user", name), ("team", name),
    }  # fmt: skip
    for scope in ("users", "teams"):
        assert admin_client.delete(f"/admin/quotas/{scope}/{quoted}", headers=ADMIN).is_success


def test_setting_rules_says_what_it_replaced(admin_client: TestClient) -> None:
    """PUT replaces a subject's runtime rules as a whole, and its answer names the rules
    replaced (null the first time)."""
    first = {"rules": [{"unit": "usd", "window": "month", "limit": 5}]}
    answer = admin_client.put("/admin/quotas/users/alice", json=first, headers=ADMIN).json()
    assert answer["replaced"] is None
    second = {"rules": [{"unit": "images", "window": "day", "limit": 50}]}
    answer = admin_client.put("/admin/quotas/users/alice", json=second, headers=ADMIN).json()
    assert answer["replaced"] == [{"unit": "usd", "window": "month", "limit": 5}]
    assert answer["rules"] == [{"unit": "images", "window": "day", "limit": 50}]


def test_a_key_pasted_with_its_bearer_prefix_as_a_name_is_not_said_back(
    client: TestClient,
) -> None:
    """`Bearer gwk_...` (or a secret with a trailing newline) breaks the name rule before
    the secret check: the 400 says so without repeating the secret."""
    secret = create(client)["key"]
    for user in (f"Bearer {secret}", secret + "\n"):
        body = {"user": user, "team": "vision"}
        refused = client.post("/admin/keys", json=body, headers=ADMIN)
        assert_openai_error(refused, 400, "invalid_value", "user")
        assert secret not in refused.text and "not a valid name" in refused.text
