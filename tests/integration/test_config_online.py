"""`gateway config check --online` against a fake OpenAI on loopback: each model of the list,
listed or not, with its shutdown date; exit 2 when none is available or /models cannot be
read; the company's key sent, never printed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.config import EDITS_PRICE, UPSTREAM_KEY, edits_upstream, write_config
from support.fake_upstream import FakeUpstream, model_entry

from gateway.__main__ import main


def _config(tmp_path: Path, url: str) -> Path:
    upstream = edits_upstream(url)
    upstream["edits"] = {
        "models": ["on-a", "on-b"],
        "prices": {"on-a": EDITS_PRICE, "on-b": EDITS_PRICE},
    }
    return write_config(tmp_path / "gateway.yaml", {"upstream": upstream, "quotas": {}})


def _check(path: Path) -> int:
    return main(["config", "check", "--online", "--config", str(path)])


def test_online_says_what_the_upstream_has_of_each_model(
    tmp_path: Path,
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """on-a is gone (not listed, its own entry 404), on-b listed with a shutdown date 20 days
    out: exit 0 (one model is left), each model's line, the date flagged as soon."""
    soon = datetime.fromtimestamp(time.time() + 20 * 86_400, UTC).date().isoformat()
    upstream.models = [model_entry("on-b", soon)]
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    assert _check(_config(tmp_path, upstream.url)) == 0
    out = capsys.readouterr().out
    assert "  on-a: NOT AVAILABLE: the upstream does not have it" in out
    assert f"  on-b: available, SOON: shuts down on {soon}" in out
    assert UPSTREAM_KEY not in out


def test_online_exits_2_when_no_model_is_left(
    tmp_path: Path,
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neither model is listed: exit 2, saying so."""
    upstream.models = [model_entry("gpt-image-2")]
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    assert _check(_config(tmp_path, upstream.url)) == 2
    assert "no model of upstream.edits.models is available" in capsys.readouterr().err


def test_online_exits_2_when_models_cannot_be_read(
    tmp_path: Path,
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upstream without /models (404), or no key in the environment: exit 2 with why."""
    path = _config(tmp_path, upstream.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert _check(path) == 2
    assert "--online needs OPENAI_API_KEY set" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    assert _check(path) == 2
    assert "the upstream answered HTTP 404" in capsys.readouterr().err
    assert upstream.model_reads == 1
