"""The `gateway` command: `keys new` and `config check` (exit codes, output, error paths)."""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.__main__ import main
from gateway.admin.cli import name_argument

SECRET_VARS = (
    "OPENAI_API_KEY",
    "GATEWAY_USER_SECRET",
    "GATEWAY_DEMO_KEY",
    "GATEWAY_CONFIG",
    "REDIS_URL",
    "CACHE_REDIS_URL",
)
DIGEST = hashlib.sha256(b"k").hexdigest()
SHIPPED = str(Path(__file__).resolve().parents[2] / "config" / "gateway.yaml")
GOOD = {
    "upstream": {"base_url": "sandbox"},
    "principals": [
        {"user": "alice", "team": "vision", "key_sha256": DIGEST},
        {"user": "bob", "team": "vision", "key_sha256": "1" * 64},
        {"user": "grafana", "team": "ops", "role": "admin", "key_sha256": "2" * 64},
    ],
    "quotas": {
        "default": [
            {"unit": "requests", "limit": 60, "window": "minute"},
            {"unit": "images", "limit": 200, "window": "day"},
        ],
        "users": {"alice": [{"unit": "images", "limit": 500, "window": "day"}]},
        "teams": {"vision": [{"unit": "usd", "limit": 50.0, "window": "month"}]},
    },
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each command without the developer's gateway variables."""
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a config (a mapping dumped as YAML, or raw text) and return its path."""

    def _write(config: object, name: str = "gateway.yaml") -> Path:
        path = tmp_path / name
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def _check(path: Path) -> int:
    return main(["config", "check", "--config", str(path)])


def test_keys_new_prints_a_key_and_its_digest(capsys: pytest.CaptureFixture[str]) -> None:
    """`keys new` exits 0, prints a gwk_ key once and a config entry holding its SHA-256."""
    assert main(["keys", "new", "--user", "alice", "--team", "vision"]) == 0
    out = capsys.readouterr().out
    key_match = re.search(r"(gwk_[A-Za-z0-9_-]{40,})", out)
    digest_match = re.search(r'key_sha256: "([0-9a-f]{64})"', out)
    assert key_match, out
    assert digest_match, out
    key, digest = key_match.group(1), digest_match.group(1)
    assert out.count(key) == 1
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert 'user: "alice", team: "vision", role: user' in out


def test_keys_new_entry_pastes_into_a_valid_config(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """The printed entry, pasted under `principals:`, passes `config check` as that admin."""
    assert main(["keys", "new", "--user", "ops-bot", "--team", "ops", "--role", "admin"]) == 0
    entry = next(line for line in capsys.readouterr().out.splitlines() if "key_sha256" in line)
    path = write(f"upstream:\n  base_url: sandbox\nprincipals:\n{entry}\n")
    assert _check(path) == 0
    assert "ops-bot (team ops, role admin):" in capsys.readouterr().out


def test_keys_new_gives_a_fresh_key_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs print two different keys."""
    main(["keys", "new", "--user", "a", "--team", "t"])
    main(["keys", "new", "--user", "a", "--team", "t"])
    keys = re.findall(r"gwk_[A-Za-z0-9_-]{40,}", capsys.readouterr().out)
    assert len(keys) == 2
    assert keys[0] != keys[1]


def test_keys_new_requires_user_and_team(capsys: pytest.CaptureFixture[str]) -> None:
    """`keys new` without --team is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["keys", "new", "--user", "alice"])
    assert caught.value.code == 2
    assert "--team" in capsys.readouterr().err


def test_config_check_prints_the_policy_per_user(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A good config exits 0 and lists each principal's effective rules, overrides and pools."""
    assert _check(write(GOOD)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("gateway.yaml: ok")
    lines = _lines(out)
    assert ["alice", "(team", "vision,", "role", "user):"] in lines
    assert ["user", "alice", "requests", "60", "per", "minute"] in lines
    assert ["user", "alice", "images", "500", "per", "day"] in lines  # the override
    assert ["user", "alice", "images", "200", "per", "day"] not in lines
    assert ["team", "vision", "usd", "50", "per", "month"] in lines
    assert ["user", "bob", "images", "200", "per", "day"] in lines
    assert ["grafana", "(team", "ops,", "role", "admin):"] in lines
    assert ["team", "ops", "usd", "50", "per", "month"] not in lines


def test_config_check_says_unlimited_without_rules(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A principal with no rule at all is reported as unlimited."""
    config = {**GOOD, "quotas": {}}
    assert _check(write(config)) == 0
    assert "no quota rules: unlimited" in capsys.readouterr().out


def test_config_check_names_other_identity_sources_and_warns(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """With SSO and trusted headers, config check says who else may call and warns of risks."""
    identity = {
        "jwt": {
            "issuer": "https://login.example.com",
            "audience": "gw",
            "jwks_url": "http://login.example.com/keys",
            "default_team": "misc",
        },
        "trusted_header": {"team_header": "X-Team", "proxies": ["10.0.0.0/8"]},
    }
    assert _check(write({**GOOD, "identity": identity})) == 0
    captured = capsys.readouterr()
    assert (
        "other users (SSO tokens issued by https://login.example.com; "
        "trusted headers from 10.0.0.0/8):" in captured.out
    )
    assert "identity.jwt.jwks_url is plain http" in captured.err


def test_config_check_of_the_shipped_config_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """The repository's config/gateway.yaml passes `config check`."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"
    assert _check(path) == 0
    assert ": ok" in capsys.readouterr().out


def test_config_check_says_which_adapter_and_model_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ops switching to the edits adapter see the model and what a request reserves."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "gateway.edits.example.yaml"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "s")
    assert _check(path) == 0
    out = capsys.readouterr().out
    assert "upstream: edits adapter, https://api.openai.com/v1" in out
    assert "models, the first available serving: gpt-image-2" in out
    assert "gpt-image-2, quality medium: reserves 0.05301 USD per image (1767 output" in out


def test_config_check_says_plainly_that_variations_have_no_model_at_openai(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """adapter: variations at api.openai.com: a warning that points to adapter: edits."""
    path = write({"upstream": {"base_url": "https://api.openai.com/v1"}, "quotas": {}}, "v.yaml")
    assert _check(path) == 0
    err = capsys.readouterr().err
    assert "upstream.adapter: variations has no live model at api.openai.com" in err
    assert "Set adapter: edits" in err


def test_config_check_reads_gateway_config_env(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config, `config check` reads the file named by GATEWAY_CONFIG."""
    path = write(GOOD, "from-env.yaml")
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    assert main(["config", "check"]) == 0
    assert "from-env.yaml: ok" in capsys.readouterr().out


def _broken(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    assert _check(path) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("gateway: ")
    return captured.err


def test_unknown_key_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """An unknown key exits 2 and stderr names its path."""
    err = _broken(capsys, write({**GOOD, "upstream": {"base_url": "sandbox", "timeout": 5}}))
    assert "upstream.timeout: unknown key" in err


def test_bad_value_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A bad upstream.timeout_seconds exits 2 and stderr names upstream.timeout_seconds."""
    err = _broken(
        capsys, write({**GOOD, "upstream": {"base_url": "sandbox", "timeout_seconds": -3}})
    )
    assert "upstream.timeout_seconds:" in err


def test_bad_rule_unit_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A bad unit in the first default rule exits 2 naming quotas.default[0].unit."""
    quotas = {"default": [{"unit": "tokens", "limit": 1, "window": "day"}]}
    err = _broken(capsys, write({**GOOD, "quotas": quotas}))
    assert "quotas.default[0].unit:" in err


def test_invalid_yaml_exits_2(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A file that is not YAML exits 2 saying so."""
    err = _broken(capsys, write("upstream: {base_url: sandbox\nprincipals: [\n"))
    assert "not valid YAML" in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config path that does not exist exits 2 naming it."""
    path = tmp_path / "absent.yaml"
    err = _broken(capsys, path)
    assert str(path) in err
    assert "cannot read" in err


def test_non_utf8_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config file that is not UTF-8 exits 2 instead of a traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"upstream:\n  base_url: caf\xe9\n")
    assert "latin1.yaml" in _broken(capsys, path)


def _env_line(out: str, name: str) -> list[str]:
    """The `config check` line about environment variable `name`, as words."""
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [name])


def test_real_upstream_checks_without_its_secrets(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """With no secret in the environment, a real-upstream config passes `config check`, which
    lists the variables serve needs as required and unset."""
    config = {**GOOD, "upstream": {"base_url": "https://api.openai.com/v1"}}
    assert _check(write(config)) == 0
    out = capsys.readouterr().out
    assert _env_line(out, "OPENAI_API_KEY")[:4] == [
        "OPENAI_API_KEY",
        "required",
        "unset",
        "upstream.api_key_env:",
    ]
    assert _env_line(out, "GATEWAY_USER_SECRET")[:3] == ["GATEWAY_USER_SECRET", "required", "unset"]
    assert _env_line(out, "REDIS_URL")[:3] == ["REDIS_URL", "optional", "unset"]


def test_require_env_exits_2_naming_what_serve_lacks(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config check --require-env` exits 2 naming each required variable that is unset."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-upstream")
    path = write({**GOOD, "upstream": {"base_url": "https://api.openai.com/v1"}})
    assert main(["config", "check", "--config", str(path), "--require-env"]) == 2
    err = capsys.readouterr().err
    assert "GATEWAY_USER_SECRET" in err
    assert "OPENAI_API_KEY" not in err


def test_environment_list_says_set_but_never_the_value(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable that is set is reported as set, and its value appears nowhere."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-upstream-value")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis:6379/0")
    path = write({**GOOD, "upstream": {"base_url": "https://api.openai.com/v1"}})
    assert main(["config", "check", "--config", str(path), "--require-env"]) == 2
    captured = capsys.readouterr()
    assert _env_line(captured.out, "OPENAI_API_KEY")[1:3] == ["required", "set"]
    assert _env_line(captured.out, "REDIS_URL")[1:3] == ["optional", "set"]
    for value in ("sk-test-upstream-value", "hunter2"):
        assert value not in captured.out + captured.err


def test_default_config_prints_default_rules_and_team_pools(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """Without principals, `config check` still prints the default rules, the overrides and the
    team pools, the policy every SSO or header caller gets."""
    config = {**GOOD, "principals": []}
    assert _check(write(config)) == 0
    lines = _lines(capsys.readouterr().out)
    rules = lines.index(["default", "rules,", "per", "user", "(quotas.default):"])
    assert lines[rules + 1 : rules + 3] == [
        ["requests", "60", "per", "minute"],
        ["images", "200", "per", "day"],
    ]
    assert ["alice", "images", "500", "per", "day"] in lines
    assert ["vision", "usd", "50", "per", "month"] in lines
    assert lines[-1][:2] == ["principals:", "none"]


def test_shipped_config_prints_its_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """config/gateway.yaml, which lists no principal, shows its default rules."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"
    assert _check(path) == 0
    lines = _lines(capsys.readouterr().out)
    assert ["requests", "60", "per", "minute"] in lines
    assert ["images", "200", "per", "day"] in lines


@pytest.mark.parametrize(
    ("drop", "warned"),
    [("upstream", "requests go to https://api.openai.com/v1"), ("quotas", "without limit")],
)
def test_missing_upstream_or_quotas_section_is_warned(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], drop: str, warned: str
) -> None:
    """A file without `upstream:` (which means api.openai.com) or without `quotas:` (which
    means no limit) still passes, with a warning naming the section."""
    config = {key: value for key, value in GOOD.items() if key != drop}
    assert _check(write(config)) == 0
    err = capsys.readouterr().err
    assert f"no {drop}: section" in err
    assert warned in err


def test_complete_config_gets_no_section_warning(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A file with both sections gets neither warning."""
    assert _check(write(GOOD)) == 0
    assert "section" not in capsys.readouterr().err


def test_real_upstream_with_its_secrets_passes(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real upstream passes once its key and the user secret are in the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-upstream")
    monkeypatch.setenv("GATEWAY_USER_SECRET", "hmac")
    config = {**GOOD, "upstream": {"base_url": "https://api.openai.com/v1"}}
    assert _check(write(config)) == 0
    out = capsys.readouterr().out
    assert "sk-test-upstream" not in out
    assert "hmac" not in out


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--user", "a b"), ("--team", "{vision}"), ("--user", "x" * 257), ("--team", "é")],
)
def test_keys_new_refuses_names_the_config_would_refuse(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    """`keys new` exits 2 on a name `config check` would reject, saying the rule, and prints
    no key."""
    names = {"--user": "alice", "--team": "vision", flag: value}
    with pytest.raises(SystemExit) as caught:
        main(["keys", "new", "--user", names["--user"], "--team", names["--team"]])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert "gwk_" not in captured.out
    assert f"argument {flag}" in captured.err
    assert "printable ASCII characters, no spaces or braces" in captured.err


def test_config_refuses_the_same_names_with_the_same_rule(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path]
) -> None:
    """A principal named like `--user 'a b'` fails `config check`, with the rule `keys new`
    says, and without pydantic's "Value error," in front of it."""
    config = {**GOOD, "principals": [{"user": "a b", "team": "vision", "key_sha256": DIGEST}]}
    err = _broken(capsys, write(config))
    assert "principals[0].user: 'a b' is not a valid name:" in err
    assert "printable ASCII characters, no spaces or braces" in err
    assert "Value error" not in err


@pytest.mark.parametrize("name", ["auth0|5f1c9a", "corp\\jdoe", "a/b", 'say"hi', "x" * 256])
def test_keys_new_entry_of_an_idp_subject_pastes_into_the_config(
    capsys: pytest.CaptureFixture[str], write: Callable[..., Path], name: str
) -> None:
    """The config takes the names identity providers issue (the rule runtime keys and tokens
    follow), and `keys new` prints an entry for one that pastes into the config as it is."""
    assert main(["keys", "new", "--user", name, "--team", name]) == 0
    entry = next(line for line in capsys.readouterr().out.splitlines() if "key_sha256" in line)
    path = write(f"upstream:\n  base_url: sandbox\nprincipals:\n{entry}\n")
    assert _check(path) == 0
    assert f"{name} (team {name}, role user):" in capsys.readouterr().out


BAD_REDIS_URLS = [
    ("redis+sentinl://127.0.0.1:26379/mymaster", "not a Redis URL"),
    ("redis+sentinel://127.0.0.1:26379/mymaster/abc", "the database must be a number"),
    ("redis://127.0.0.1:6379/abc", "the database must be a number"),
]


@pytest.mark.parametrize("variable", ["REDIS_URL", "CACHE_REDIS_URL"])
@pytest.mark.parametrize(("url", "problem"), BAD_REDIS_URLS)
def test_config_check_refuses_a_redis_url_serve_would_refuse(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    url: str,
    problem: str,
) -> None:
    """A Redis URL `serve` cannot use fails `config check` (with or without --require-env):
    exit 2, one line naming the variable and the problem, never the URL."""
    monkeypatch.setenv(variable, url)
    for extra in ([], ["--require-env"]):
        assert main(["config", "check", "--config", SHIPPED, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"gateway: {variable}: ") and err.count("\n") == 1, err
        assert problem in err and "127.0.0.1" not in err


def test_a_misspelt_rule_lists_the_units_and_windows(capsys: pytest.CaptureFixture[str]) -> None:
    """`--rule images:dya:5` exits 2 naming every valid unit and window, before any call."""
    with pytest.raises(SystemExit) as caught:
        main(["quotas", "set", "--user", "alice", "--rule", "images:dya:5"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "requests, images, usd" in err and "minute, hour, day, week, month" in err


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_keys_revoke_and_rotate_refuse_a_secret_where_an_id_belongs(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gateway keys revoke|rotate gwk_...` exits 2 before calling any gateway, saying the
    argument is a key's secret and not its id, without repeating the secret."""
    secret = "gwk_" + "Q" * 43
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "gwk_admin")
    with pytest.raises(SystemExit) as exited:
        main(["keys", command, secret, "--url", "http://127.0.0.1:9"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "secret, not" in err and "gateway keys list" in err
    assert secret not in err and "cannot reach" not in err


def test_a_secret_pasted_with_its_prefix_as_a_name_is_not_said_back() -> None:
    """`--user "Bearer gwk_..."` breaks the name rule; the refusal does not repeat it."""
    secret = "gwk_" + "A1b2" * 8
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        name_argument(f"Bearer {secret}")
    assert secret not in str(refused.value) and "not a valid name" in str(refused.value)
