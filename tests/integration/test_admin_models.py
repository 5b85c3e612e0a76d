"""Model lists and prices through the admin API, on the in-process store and a real Redis:
the view with each part's source, changes that take effect at once and are audited, and
refusals that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.config import EDITS_MODEL, EDITS_PRICE, auth, edits_upstream
from support.fake_upstream import FakeUpstream, Reply, edits_response
from support.fixtures import AppFactory
from support.requests import assert_openai_error, post_variation

ADMIN = auth("grafana")
OTHER = {**EDITS_PRICE, "image_output_per_1m_tokens": 80.0}
ROUTES = [
    ("GET", "/admin/models"),
    ("PUT", "/admin/models/lists/edits"),
    ("DELETE", "/admin/models/lists/edits"),
    ("PUT", "/admin/models/prices/gpt-image-x"),
    ("DELETE", "/admin/models/prices/gpt-image-x"),
]


@pytest.fixture(params=["memory", "redis"])
def models_client(
    request: pytest.FixtureRequest, make_client: AppFactory, upstream: FakeUpstream
) -> TestClient:
    """The edits gateway (one model, gpt-image-test) on the in-process store or a Redis."""
    upstream.script = lambda received: Reply(body=edits_response(received))
    env = {} if request.param == "memory" else {"REDIS_URL": request.getfixturevalue("clean_redis")}
    return make_client({"upstream": edits_upstream(upstream.url)}, env)


def put(client: TestClient, path: str, body: Any) -> Any:
    return client.put(path, json=body, headers=ADMIN)


def view(client: TestClient) -> dict[str, Any]:
    answer = client.get("/admin/models", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def settings(client: TestClient) -> dict[str, Any]:
    """The view's lists and prices (not the watch's reading, which runs on its own)."""
    answer = view(client)
    return {"lists": answer["lists"], "prices": answer["prices"]}


def audit(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/admin/audit", headers=ADMIN).json()["data"])


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_model_routes_need_an_admin(models_client: TestClient, method: str, path: str) -> None:
    """No key: 401; a non-admin: 403; nothing changes."""
    body = {"models": ["x"]}
    assert_openai_error(models_client.request(method, path, json=body), 401, "invalid_api_key")
    refused = models_client.request(method, path, json=body, headers=auth("alice"))
    assert_openai_error(refused, 403, "permission_denied")
    assert audit(models_client) == []


def test_the_view_shows_the_config_list_and_prices_with_their_source(
    models_client: TestClient,
) -> None:
    """GET /admin/models: the list in force (config), the serving model, each model's state
    and reservation estimates, every priced model and the last /models reading."""
    answer = view(models_client)
    (edits,) = answer["lists"]
    assert edits == {
        "operation": "edits",
        "models": [EDITS_MODEL],
        "source": "config",
        "config_models": [EDITS_MODEL],
        "serving": EDITS_MODEL,
    }
    (model,) = answer["models"]
    assert model["available"] is True and model["price_source"] == "config"
    assert model["estimate_usd"] == {"1024x1024": {"low": 0.01, "medium": 0.04, "high": 0.2}}
    assert answer["prices"] == [{"model": EDITS_MODEL, "source": "config", "price": {
        **EDITS_PRICE, "text_output_per_1m_tokens": None}}]  # fmt: skip
    assert answer["watch"]["every_seconds"] == 300


def test_a_list_and_a_price_set_at_run_time_serve_at_once_and_are_audited(
    models_client: TestClient, upstream: FakeUpstream
) -> None:
    """Price a new model, put it first: the next call goes to it at its price; the view says
    `runtime`; each change is one audit entry with before and after."""
    priced = put(models_client, "/admin/models/prices/gpt-image-x", OTHER)
    assert priced.status_code == 200, priced.text
    assert priced.json()["estimate_usd"]["1024x1024"]["medium"] == 0.08
    listed = put(
        models_client, "/admin/models/lists/edits", {"models": ["gpt-image-x", EDITS_MODEL]}
    )
    assert listed.json() == {
        "operation": "edits", "models": ["gpt-image-x", EDITS_MODEL], "replaced": None,
    }  # fmt: skip
    response = post_variation(models_client)
    assert response.headers["x-gateway-upstream-model"] == "gpt-image-x"
    assert upstream.received[-1].fields["model"] == "gpt-image-x"
    answer = view(models_client)
    assert answer["lists"][0]["source"] == "runtime"
    assert answer["lists"][0]["config_models"] == [EDITS_MODEL]
    assert {p["model"]: p["source"] for p in answer["prices"]} == {
        "gpt-image-x": "runtime", EDITS_MODEL: "config",
    }  # fmt: skip
    entries = audit(models_client)
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("models.set", "models:edits", "grafana"),
        ("model_price.set", "price:gpt-image-x", "grafana"),
    ]
    assert entries[0]["before"] is None and entries[0]["after"] == ["gpt-image-x", EDITS_MODEL]


def test_unsetting_goes_back_to_the_config(models_client: TestClient) -> None:
    """DELETE the list, then the price: the config's apply again; a second DELETE is 404."""
    put(models_client, "/admin/models/prices/gpt-image-x", OTHER)
    put(models_client, "/admin/models/lists/edits", {"models": ["gpt-image-x"]})
    in_use = models_client.delete("/admin/models/prices/gpt-image-x", headers=ADMIN)
    assert_openai_error(in_use, 400, "model_in_use", "model")
    dropped = models_client.delete("/admin/models/lists/edits", headers=ADMIN)
    assert dropped.json() == {
        "operation": "edits",
        "removed": ["gpt-image-x"],
        "models": [EDITS_MODEL],
    }
    assert (
        models_client.delete("/admin/models/prices/gpt-image-x", headers=ADMIN).status_code == 200
    )
    assert view(models_client)["lists"][0]["models"] == [EDITS_MODEL]
    again = models_client.delete("/admin/models/lists/edits", headers=ADMIN)
    assert_openai_error(again, 404, "not_found")


def test_setting_the_same_list_twice_writes_once(models_client: TestClient) -> None:
    """A change to what is already in force changes nothing and is not audited."""
    for _ in range(2):
        assert (
            put(models_client, "/admin/models/lists/edits", {"models": [EDITS_MODEL]}).status_code
            == 200
        )
    assert len(audit(models_client)) == 1


REFUSALS = [
    ("/admin/models/lists/edits", {"models": []}, "invalid_value", "models"),
    ("/admin/models/lists/edits", {"models": ["a b"]}, "invalid_value", "models.0"),
    (
        "/admin/models/lists/edits",
        {"models": [EDITS_MODEL, EDITS_MODEL]},
        "duplicate_model",
        "models",
    ),
    (
        "/admin/models/lists/edits",
        {"models": [EDITS_MODEL, "unpriced"]},
        "unpriced_model",
        "models.1",
    ),
    (
        "/admin/models/lists/edits",
        {"models": [EDITS_MODEL], "model": "x"},
        "unknown_parameter",
        "model",
    ),
    (
        "/admin/models/prices/gpt-image-x",
        {**OTHER, "output_tokens": {}},
        "invalid_value",
        "output_tokens",
    ),
    (
        "/admin/models/prices/gpt-image-x",
        {**OTHER, "image_output_per_1m_tokens": -1},
        "invalid_value",
        "image_output_per_1m_tokens",
    ),
    ("/admin/models/prices/a%20b", OTHER, "invalid_value", "model"),
]


@pytest.mark.parametrize(("path", "body", "code", "param"), REFUSALS)
def test_bad_lists_and_prices_are_refused_and_change_nothing(
    models_client: TestClient, path: str, body: Any, code: str, param: str
) -> None:
    """Each refusal is a 400 naming the field; the view and the audit trail are unchanged."""
    before = settings(models_client)
    assert_openai_error(put(models_client, path, body), 400, code, param)
    assert settings(models_client) == before
    assert audit(models_client) == []


def test_an_operation_without_a_list_is_404(models_client: TestClient) -> None:
    """Only the edits list exists; another operation's is not found."""
    answer = put(models_client, "/admin/models/lists/generations", {"models": [EDITS_MODEL]})
    assert_openai_error(answer, 404, "not_found")


def test_the_variations_adapter_has_no_list_to_change(
    make_client: Callable[..., TestClient],
) -> None:
    """adapter: variations: the view is empty, a list cannot be set."""
    client = make_client()
    assert view(client)["lists"] == [] and view(client)["models"] == []
    answer = put(client, "/admin/models/lists/edits", {"models": ["x"]})
    assert_openai_error(answer, 404, "not_found")
