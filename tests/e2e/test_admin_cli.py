"""The admin CLI as an operator types it against a live gateway: what it prints, what it
refuses, and how it exits (0, or 2 with one line on standard error)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.cli import cli, refused
from support.pngs import make_png
from support.servers import GatewayProcess, free_port

pytestmark = pytest.mark.e2e


def test_keys_create_refuses_a_case_variant_and_a_new_team_unless_told(
    live: GatewayProcess,
) -> None:
    """`--team Vision` beside the configured vision is refused with a hint; a team nobody
    names needs --new-team; `keys list` prints the API's answer, as the docs say."""
    hint = refused(cli(live.url, "keys", "create", "--user", "dave", "--team", "Vision"))
    assert "did you mean 'vision'" in hint
    assert "--new-team" in refused(
        cli(live.url, "keys", "create", "--user", "dave", "--team", "research")
    )
    made = cli(
        live.url, "keys", "create", "--user", "auth0|5f1c", "--team", "research", "--new-team"
    )
    assert made.code == 0, made.err
    listing = cli(live.url, "keys", "list", "--team", "research").json()
    assert listing["object"] == "list"
    assert [k["user"] for k in listing["data"]] == ["auth0|5f1c"]


def test_keys_create_for_a_configured_user_needs_existing_user(live: GatewayProcess) -> None:
    """A key for the configured principal carol is refused (409 user_exists, naming the
    flag) until --existing-user says the admin means it."""
    line = refused(cli(live.url, "keys", "create", "--user", "carol", "--team", "audio"))
    assert line.startswith("gateway: 409 user_exists") and "--existing-user" in line
    made = cli(live.url, "keys", "create", "--user", "carol", "--team", "audio", "--existing-user")
    assert made.code == 0 and made.json()["user"] == "carol", made.err


def test_quotas_set_says_what_it_replaced_and_show_reads_it_back(live: GatewayProcess) -> None:
    """Setting images:day:50 after usd:month:5 says the usd rule is no longer set; `quotas
    show` prints the subject's rules; a name with `/` works throughout."""
    first = cli(live.url, "quotas", "set", "--user", "a/b", "--rule", "usd:month:5")
    assert first.code == 0 and first.err == "", first
    second = cli(live.url, "quotas", "set", "--user", "a/b", "--rule", "images:day:50")
    assert second.code == 0 and second.json()["replaced"][0]["unit"] == "usd"
    assert "usd:month:5 no longer set" in second.err
    shown = cli(live.url, "quotas", "show", "--user", "a/b").json()
    assert shown["overrides"] == [
        {"scope": "user", "subject": "a/b", "rules": [{"unit": "images", "window": "day",
                                                       "limit": 50}]}
    ]  # fmt: skip
    assert cli(live.url, "quotas", "unset", "--user", "a/b").code == 0


def test_audit_prints_the_trail(live: GatewayProcess) -> None:
    """`gateway audit` prints the API's answer, filtered as asked."""
    cli(live.url, "quotas", "set", "--team", "vision", "--rule", "images:day:9")
    trail = cli(live.url, "audit", "--action", "quota.set").json()
    assert [(e["action"], e["target"]) for e in trail["data"]] == [("quota.set", "team:vision")]
    assert trail["next_before"] is None


def test_usage_export_to_a_missing_directory_or_to_standard_output(
    live: GatewayProcess, tmp_path: Path
) -> None:
    """A file that cannot be written is one line and exit 2; `--output -` writes the CSV to
    standard output (no file named -); a file of one row says `(1 row)`."""
    assert live.post_variation(make_png(16)).status_code == 200
    month = ("--month", time.strftime("%Y-%m", time.gmtime()))
    line = refused(cli(live.url, "usage", "export", *month, "--output", "/nonexistent/dir/x.csv"))
    assert "cannot write /nonexistent/dir/x.csv" in line
    piped = cli(live.url, "usage", "export", *month, "--output", "-", cwd=tmp_path)
    assert piped.code == 0 and piped.out.splitlines()[0].startswith("team,requests")
    assert not (tmp_path / "-").exists()
    written = cli(live.url, "usage", "export", *month, cwd=tmp_path)
    assert written.out.endswith("(1 row)\n"), written.out


def test_an_unreachable_gateway_is_named_without_a_stray_question_mark() -> None:
    """`keys list` against nothing says which URL it could not reach, as it is."""
    url = f"http://127.0.0.1:{free_port()}"
    line = refused(cli(url, "keys", "list"))
    assert f"cannot reach {url}/admin/keys: " in line
