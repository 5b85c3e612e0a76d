"""`gateway serve` before it starts: a taken port, image URLs nobody can open."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from support.serve import serve_until_uvicorn

from gateway.__main__ import main
from gateway.server.preflight import base_url

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = str(ROOT / "config" / "gateway.yaml")
EDITS = str(ROOT / "config" / "gateway.edits.example.yaml")
UNREACHABLE = "no caller can open"
# The wildcard address is what these tests are about; nothing listens on it for long.
WILDCARD = "0.0.0.0"  # noqa: S104


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No public URL, demo key or config of the developer's shell."""
    for name in (
        "GATEWAY_PUBLIC_URL",
        "GATEWAY_DEMO_KEY",
        "GATEWAY_DEMO_ADMIN_KEY",
        "GATEWAY_CONFIG",
        "REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_taken_port_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port another process listens on stops serve with exit 2 and a hint (another port
    via PORT or --port), instead of uvicorn's bare Errno 98."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        options = serve_until_uvicorn(
            monkeypatch, "--config", SANDBOX, "--host", "127.0.0.1", "--port", str(port)
        )
    assert options is None
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert f"make run PORT={port + 1}" in err
    assert "Errno" not in err


def test_free_port_starts_uvicorn_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the port free, serve hands uvicorn the host and port it was given."""
    options = serve_until_uvicorn(monkeypatch, "--config", SANDBOX, "--port", "0")
    assert options is not None
    assert (options["host"], options["port"]) == ("127.0.0.1", 0)


@pytest.mark.parametrize("config", [SANDBOX, EDITS])
def test_wildcard_host_without_public_url_is_warned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config: str
) -> None:
    """`--host 0.0.0.0` with the sandbox or the edits adapter and no GATEWAY_PUBLIC_URL warns
    that the image URLs will name 0.0.0.0, and says what to set."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "s")
    assert serve_until_uvicorn(monkeypatch, "--config", config, "--host", WILDCARD, "--port", "0")
    err = capsys.readouterr().err
    assert "http://0.0.0.0:0/files/..." in err
    assert UNREACHABLE in err
    assert "Set GATEWAY_PUBLIC_URL" in err


@pytest.mark.parametrize(
    ("config", "host", "public_url"),
    [
        (SANDBOX, WILDCARD, "http://gw.example:8080"),  # told where callers reach it
        (SANDBOX, "127.0.0.1", None),  # the serve address is reachable
    ],
)
def test_reachable_image_urls_are_not_warned(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    config: str,
    host: str,
    public_url: str | None,
) -> None:
    """A public URL, or a concrete host, gives image URLs callers can open: no warning."""
    if public_url:
        monkeypatch.setenv("GATEWAY_PUBLIC_URL", public_url)
    assert serve_until_uvicorn(monkeypatch, "--config", config, "--host", host, "--port", "0")
    assert UNREACHABLE not in capsys.readouterr().err


def test_variations_adapter_serves_no_images_so_is_not_warned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real upstream through the variations adapter hands out OpenAI's own URLs: no warning."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "s")
    config = tmp_path / "real.yaml"
    config.write_text("upstream: {base_url: https://api.openai.com/v1}\nquotas: {}\n")
    assert serve_until_uvicorn(
        monkeypatch, "--config", str(config), "--host", WILDCARD, "--port", "0"
    )
    assert UNREACHABLE not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("gw", "http://gw:8080"),
    ],
)
def test_default_public_url_is_a_valid_url(host: str, url: str) -> None:
    """The default public URL (the serve address) brackets an IPv6 address."""
    assert base_url(host, 8080) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinl://127.0.0.1:26379/mymaster",
        "redis+sentinel://127.0.0.1:26379/mymaster/abc",
        "redis://127.0.0.1:6379/abc",
    ],
)
def test_a_redis_url_it_cannot_use_stops_serve_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """serve refuses a Redis URL `config check` refuses, with the same one line naming the
    variable (exit 2), before uvicorn and without a traceback."""
    monkeypatch.setenv("REDIS_URL", url)
    assert serve_until_uvicorn(monkeypatch, "--config", SANDBOX, "--port", "0") is None
    err = capsys.readouterr().err
    assert err.startswith("gateway: REDIS_URL: ") and err.count("\n") == 1, err
    assert main(["config", "check", "--config", SANDBOX]) == 2
    assert capsys.readouterr().err == err


def test_demo_key_prints_a_local_admin_key_beside_the_demo_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --demo-key` (make run) prints the demo key and, beside it, a demo admin key
    marked local only with the console's address; the two differ and both are accepted."""
    assert serve_until_uvicorn(monkeypatch, "--config", SANDBOX, "--port", "0", "--demo-key")
    out = capsys.readouterr().out
    user = re.search(r"^demo key: (gwk_\S+)$", out, re.M)
    admin = re.search(r"^demo admin key: (gwk_\S+)$\n(.*)$", out, re.M)
    assert user and admin, out
    assert user.group(1) != admin.group(1)
    assert "local only" in admin.group(2) and "/admin/console" in admin.group(2)
    assert os.environ["GATEWAY_DEMO_ADMIN_KEY"] == admin.group(1)  # what the workers accept


def test_without_demo_key_no_admin_key_is_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain `serve` makes and prints no demo key of either kind."""
    assert serve_until_uvicorn(monkeypatch, "--config", SANDBOX, "--port", "0")
    assert "demo" not in capsys.readouterr().out
    assert "GATEWAY_DEMO_ADMIN_KEY" not in os.environ
