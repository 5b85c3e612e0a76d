"""Budget alerts end to end in one process: webhooks and thresholds set through the admin
API, a crossing posted once per webhook, signed, in the generic, Slack and Teams shapes, a
failing receiver retried then shown as failed, and bad input refused with nothing changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import auth
from support.requests import post_variation
from support.webhook_receiver import WebhookReceiver

ADMIN = auth("grafana")
POOL = {"teams": {"vision": [{"unit": "images", "limit": 4, "window": "day"}]}}
FAST = {"attempts": 3, "backoff_seconds": 0.05, "timeout_seconds": 2}


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    """A receiver on loopback, answering 200 unless told otherwise."""
    with WebhookReceiver() as receiver:
        yield receiver


def _webhook(client: TestClient, hooks: WebhookReceiver, fmt: str) -> dict[str, Any]:
    body = {"name": f"{fmt} alerts", "url": hooks.url("/" + fmt), "format": fmt}
    created = client.post("/admin/webhooks", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return dict(created.json())


def _alerts(client: TestClient, thresholds: list[int], webhooks: list[str]) -> None:
    body = {"thresholds": thresholds, "webhooks": webhooks}
    answer = client.put("/admin/alerts/teams/vision", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text


def _spend(client: TestClient, n: int) -> None:
    assert post_variation(client, fields={"n": str(n), "size": "256x256"}).status_code == 200


def test_a_crossing_is_posted_once_per_webhook_signed_in_each_shape(
    make_client: Callable[..., TestClient], hooks: WebhookReceiver
) -> None:
    """Team vision (4 images a day) crosses 50 % with 2 images, then 80 and 100 % together
    with 2 more: each webhook gets exactly two posts, each signed with its own secret, the
    generic one naming the thresholds, the spend and the projection, the Slack and Teams
    ones in their own message shapes."""
    client = make_client({"quotas": POOL, "notifications": FAST})
    made = {fmt: _webhook(client, hooks, fmt) for fmt in ("json", "slack", "teams")}
    assert all(hook["secret"].startswith("whsec_") for hook in made.values())
    _alerts(client, [50, 80, 100], [hook["id"] for hook in made.values()])
    _spend(client, 2)
    _spend(client, 1)  # 75 %: nothing new
    _spend(client, 1)
    for fmt, hook in made.items():
        posts = hooks.wait_for("/" + fmt, 2)
        assert len(posts) == 2 and all(p.signed_by(hook["secret"]) for p in posts)
        assert not posts[0].signed_by(made["json" if fmt != "json" else "slack"]["secret"])
        assert posts[0].headers["x-gateway-event"] == "budget.threshold_crossed"
    first, second = (p.json() for p in hooks.at("/json"))
    assert (first["thresholds"], second["thresholds"]) == ([50], [80, 100])
    assert first["budget"]["scope"] == "team" and first["budget"]["subject"] == "vision"
    assert (first["used"], first["budget"]["limit"]) == (2, 4)
    assert first["projected"] >= first["used"] and first["request"]["user"] == "alice"
    assert "has used 50 % of its daily images budget" in first["text"]
    slack = hooks.at("/slack")[1].json()
    assert "100 %" in slack["text"] and slack["blocks"][0]["type"] == "section"
    card = hooks.at("/teams")[0].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    _spend_refused = post_variation(client, fields={"n": "1", "size": "256x256"})
    assert _spend_refused.status_code == 429
    assert len(hooks.wait_for("/json", 3, seconds=0.5)) == 2  # nothing left to announce
    history = client.get("/admin/deliveries", headers=ADMIN).json()["data"]
    assert [e["status"] for e in history] == ["sent"] * 6


def test_a_failing_receiver_is_retried_then_shown_as_failed(
    make_client: Callable[..., TestClient], hooks: WebhookReceiver
) -> None:
    """A receiver answering 500 gets the delivery three times (the same delivery id, each
    attempt signed afresh); the history says retrying, retrying, then failed."""
    hooks.status = 500
    client = make_client({"quotas": POOL, "notifications": FAST})
    hook = _webhook(client, hooks, "json")
    _alerts(client, [50], [hook["id"]])
    _spend(client, 2)
    posts = hooks.wait_for("/json", 3)
    assert len({p.headers["x-gateway-delivery"] for p in posts}) == 1
    assert all(p.signed_by(hook["secret"]) for p in posts)

    def history() -> list[dict[str, Any]]:
        answer = client.get(f"/admin/deliveries?webhook={hook['id']}", headers=ADMIN)
        return list(answer.json()["data"])

    deadline = time.monotonic() + 10
    while len(history()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the last attempt's record follows its post by a moment
    entries = history()
    assert [(e["status"], e["attempt"], e["http_status"]) for e in entries] == [
        ("failed", 3, 500),
        ("retrying", 2, 500),
        ("retrying", 1, 500),
    ]
    assert entries[0]["summary"].startswith("Team vision has used 50 %")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/webhooks", {"name": "x", "url": "ftp://example.com/hook"}, "url"),
        ("/admin/webhooks", {"name": "x", "url": "https://u:p@example.com/"}, "url"),
        ("/admin/webhooks", {"name": "x", "url": "https://example.com", "format": "irc"}, "format"),
        ("/admin/alerts/teams/vision", {"thresholds": [0], "webhooks": ["wh_1"]}, "thresholds"),
        (
            "/admin/alerts/teams/vision",
            {"thresholds": [80, 80], "webhooks": ["wh_1"]},
            "thresholds",
        ),
        ("/admin/alerts/teams/vision", {"thresholds": [80], "webhooks": ["wh_none"]}, "webhooks"),
    ],
)
def test_bad_alert_settings_are_refused_and_change_nothing(
    client: TestClient, path: str, body: dict[str, Any], param: str
) -> None:
    """A webhook that is not http(s), carries a password or has an unknown format, and
    thresholds outside 1..100, repeated, or naming no webhook: 400 naming the field, and
    no audit entry."""
    method = client.post if path == "/admin/webhooks" else client.put
    answer = method(path, json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert client.get("/admin/audit", headers=ADMIN).json()["data"] == []


def test_webhooks_and_alerts_are_audited_without_the_secret(
    client: TestClient, hooks: WebhookReceiver
) -> None:
    """Creating, rotating and deleting a webhook and setting alerts each leave an audit
    entry; no entry, listing or later answer shows a secret."""
    hook = _webhook(client, hooks, "slack")
    rotated = client.post(f"/admin/webhooks/{hook['id']}/rotate", headers=ADMIN).json()
    assert rotated["secret"] != hook["secret"]
    _alerts(client, [80], [hook["id"]])
    assert client.delete(f"/admin/webhooks/{hook['id']}", headers=ADMIN).status_code == 200
    audit = client.get("/admin/audit", headers=ADMIN)
    actions = [e["action"] for e in audit.json()["data"]]
    assert actions == ["webhook.delete", "alerts.set", "webhook.rotate", "webhook.create"]
    listed = client.get("/admin/webhooks", headers=ADMIN).text + audit.text
    assert hook["secret"] not in listed and rotated["secret"] not in listed
    assert "whsec_" not in listed
