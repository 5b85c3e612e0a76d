"""The deployment files of SPEC section 7: image, compose, load balancer, Prometheus, Grafana.

The files are read as data and checked against each other (service names, ports, mount
paths, metric names). Where the real tools are installed, `docker compose config` (or
`docker-compose config`) and `promtool` check them too; neither needs a Docker engine.
On a laptop without them those tests skip; with CI set they fail, since CI installs them.

`queried_metric_names()` lists every series the dashboard and the alert rules query, for
tests that compare them with a live /metrics.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.deploy_files import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_RENDER,
    COMPOSE_FILE,
    CONFIG,
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    DOCKERFILE,
    DOCKERIGNORE,
    DUMMY_SECRETS,
    GATEWAY_CONFIG,
    GATEWAY_PORT,
    GATEWAY_SERVICES,
    IMAGE_CONFIG_PATH,
    NGINX_CONF,
    PROMETHEUS_CONFIG,
    ROOT,
    SECRET_VARIABLES,
    SENTINEL_OVERRIDE,
    _load_dashboard,
    _walk,
    alert_rules,
    allowed_series,
    dashboard_exprs,
    metric_names,
    promtool,
    queried_metric_names,
    require_tool,
)


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _load_yaml(COMPOSE_FILE)["services"]
    return services


def _flags(command: list[str] | str) -> dict[str, str]:
    """`--name value` pairs of a command line, as a mapping."""
    args = shlex.split(command) if isinstance(command, str) else list(command)
    return {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of every short-syntax volume of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else str(test)


@functools.cache
def _compose_command() -> tuple[str, ...] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    return (legacy,) if legacy else None


def _compose() -> list[str]:
    command = _compose_command()
    return require_tool("docker compose / docker-compose", list(command) if command else None)


def _amtool() -> list[str]:
    amtool = shutil.which("amtool")
    return require_tool("amtool", [amtool] if amtool else None)


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )


def _compose_config(
    tmp_path: Path, env: dict[str, str], *overrides: Path
) -> subprocess.CompletedProcess[str]:
    # An empty env file: a developer's own .env must not decide the outcome.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    files = [arg for path in (COMPOSE_FILE, *overrides) for arg in ("-f", str(path))]
    return _run([*_compose(), "--env-file", str(env_file), *files, "config", "-q"], env)


def _environ_without_secrets() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SECRET_VARIABLES}


# --- docker-compose.yml -------------------------------------------------------------------


def test_two_gateway_replicas_share_one_definition() -> None:
    """Both replicas run the same image, config and Redis URLs, differing only in name."""
    services = _services()
    first, second = (services[name] for name in GATEWAY_SERVICES)
    assert first == second
    assert first["build"]
    assert first["image"]
    env = _environment(first)
    assert env["REDIS_URL"] == "redis://redis-state:6379/0"
    assert env["CACHE_REDIS_URL"] == "redis://redis-cache:6379/0"
    assert _mounts(first)[IMAGE_CONFIG_PATH].endswith("config/gateway.compose.yaml")


def test_redis_state_persists_and_never_evicts() -> None:
    """Quota state is append-only persisted on a volume and refuses writes rather than evict."""
    service = _services()["redis-state"]
    flags = _flags(service["command"])
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert "/data" in _mounts(service)


def test_redis_cache_is_capped_lru_without_persistence() -> None:
    """The cache Redis has a memory cap, evicts least-recently-used keys and writes no files."""
    service = _services()["redis-cache"]
    flags = _flags(service["command"])
    assert flags["--maxmemory"] == "512mb"
    assert flags["--maxmemory-policy"] == "allkeys-lru"
    assert flags["--save"] == ""
    assert flags["--appendonly"] == "no"
    assert not service.get("volumes")


def test_every_service_has_a_healthcheck_and_gateways_probe_health_endpoints() -> None:
    """Each service is health-checked; the gateways and the balancer through /readyz or /healthz."""
    services = _services()
    for name, service in services.items():
        assert _healthcheck_command(service), f"{name} has no healthcheck"
    for name in (*GATEWAY_SERVICES, "lb"):
        command = _healthcheck_command(services[name])
        assert "/readyz" in command or "/healthz" in command, name


def test_secrets_come_only_from_the_environment() -> None:
    """Secret variables are required `${VAR:?...}` references with no default or literal value."""
    required = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}$")
    secret_like = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|WEBHOOK")
    seen = set()
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if secret_like.search(key):
                match = required.match(value)
                assert match, f"{name}: {key} must be ${{{key}:?...}}, not {value!r}"
                seen.add(match["name"])
    assert seen == set(SECRET_VARIABLES)


def test_no_credentials_in_any_deployment_file() -> None:
    """No file shipped for deployment contains something shaped like a real credential."""
    credential = re.compile(r"sk-[A-Za-z0-9_-]{16,}|gwk_[A-Za-z0-9_-]{16,}|password:\s*\S")
    files = [COMPOSE_FILE, DOCKERFILE, *CONFIG.rglob("*.y*ml"), NGINX_CONF, DASHBOARD]
    for path in files:
        assert not credential.search(path.read_text(encoding="utf-8")), path


def test_compose_config_names_the_variables_the_gateway_reads() -> None:
    """The mounted gateway config reads its secrets and Redis URLs from variables compose sets."""
    config = _load_yaml(GATEWAY_CONFIG)
    env = _environment(_services()[GATEWAY_SERVICES[0]])
    names = (
        config["upstream"]["api_key_env"],
        config["identity"]["secret_env"],
        config["store"]["redis_url_env"],
        config["cache"]["redis_url_env"],
    )
    assert set(names) <= set(env)
    assert config["upstream"]["base_url"] == "https://api.openai.com/v1"
    assert config["store"]["on_error"] == "fail_closed"


def test_compose_gateway_config_passes_config_check() -> None:
    """`gateway config check` accepts config/gateway.compose.yaml with the secrets set."""
    env = {**_environ_without_secrets(), **DUMMY_SECRETS}
    command = [sys.executable, "-m", "gateway", "config", "check", "--config", str(GATEWAY_CONFIG)]
    result = _run(command, env)
    assert result.returncode == 0, result.stderr
    assert "team vision" in result.stdout
    # Its digests are placeholders no key matches: said, per principal, until replaced.
    for user in ("alice", "bob", "grafana"):
        assert f"({user}): key_sha256 is a placeholder" in result.stderr


def test_deployment_files_point_only_to_documents_in_the_repository() -> None:
    """The comments of the compose files, the gateway's compose config and the dashboard
    refer readers to the repository's own docs, which exist, never to a document users
    do not have."""
    files = [COMPOSE_FILE, SENTINEL_OVERRIDE, GATEWAY_CONFIG, DASHBOARD, *CONFIG.glob("*.y*ml")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "SPEC" not in text, path
        for named in re.findall(r"\b((?:docs/)?[\w.-]+\.md)\b", text):
            assert (ROOT / named).is_file(), (path, named)


def test_compose_file_validates(tmp_path: Path) -> None:
    """`docker compose config -q` accepts the file once the secrets are set."""
    result = _compose_config(tmp_path, {**_environ_without_secrets(), **DUMMY_SECRETS})
    assert result.returncode == 0, result.stderr


def test_compose_sentinel_override_validates(tmp_path: Path) -> None:
    """`docker compose -f docker-compose.yml -f docker-compose.sentinel.yml config -q` accepts
    the Sentinel deployment once the secrets are set."""
    env = {**_environ_without_secrets(), **DUMMY_SECRETS}
    result = _compose_config(tmp_path, env, SENTINEL_OVERRIDE)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_the_upstream_key(tmp_path: Path) -> None:
    """Without OPENAI_API_KEY, compose stops and names the missing variable."""
    env = {**_environ_without_secrets(), **DUMMY_SECRETS}
    del env["OPENAI_API_KEY"]
    result = _compose_config(tmp_path, env)
    assert result.returncode != 0
    assert "OPENAI_API_KEY" in result.stderr + result.stdout


# --- Dockerfile ---------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_builds_a_wheel_and_runs_it_as_non_root() -> None:
    """The image is multi-stage on python:3.11-slim and its final stage runs as a non-root user."""
    instructions = _dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    assert any(keyword == "RUN" and "pip wheel" in rest for keyword, rest in instructions)
    final = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM") :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_serves_on_8080_with_the_mounted_config() -> None:
    """The image exposes 8080, checks /healthz, and serves the config compose mounts."""
    instructions = dict(_dockerfile_instructions())
    assert instructions["EXPOSE"] == str(GATEWAY_PORT)
    assert "/healthz" in instructions["HEALTHCHECK"]
    assert json.loads(instructions["CMD"]) == [
        "gateway",
        "serve",
        "--config",
        IMAGE_CONFIG_PATH,
        "--host",
        "0.0.0.0",  # noqa: S104 - the container listens on its own interface
        "--port",
        str(GATEWAY_PORT),
    ]


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build() -> None:
    """Virtualenvs (the installer's .tools too), node_modules, git history, caches and .env
    files never reach the build."""
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    expected = {
        ".venv",
        ".tools",
        "**/node_modules",
        ".git",
        ".pytest_cache",
        "bench/.work",
        ".env",
    }
    assert expected <= patterns


# --- load balancer ------------------------------------------------------------------------


def _nginx_directives() -> list[list[str]]:
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))
    text = re.sub(r"'[^']*'", "''", text)  # quoted bodies may contain ; or {
    return [part.split() for part in re.split(r"[;{}]", text) if part.strip()]


def test_load_balancer_round_robins_over_both_replicas() -> None:
    """nginx balances across exactly the two gateway services, and compose mounts its config."""
    servers = {d[1] for d in _nginx_directives() if d[0] == "server" and len(d) > 1}
    assert servers == {f"{name}:{GATEWAY_PORT}" for name in GATEWAY_SERVICES}
    directives = {d[0] for d in _nginx_directives()}
    assert not directives & {"ip_hash", "hash", "least_conn", "random"}
    lb = _services()["lb"]
    assert _mounts(lb)["/etc/nginx/nginx.conf"].endswith("config/nginx.conf")
    assert any(port.endswith(f":{GATEWAY_PORT}") for port in lb["ports"])


def _compose_gateway_config() -> Any:
    from gateway.settings.config import read_config

    return read_config(GATEWAY_CONFIG)


def test_load_balancer_streams_uploads_and_waits_for_image_calls() -> None:
    """Bodies up to 5m stream unbuffered over HTTP/1.1, and nginx waits for a reply (and
    for the gateway to read the request) longer than the gateway's upstream timeout."""
    settings = {d[0]: d[1:] for d in _nginx_directives()}
    assert settings["client_max_body_size"] == ["5m"]
    assert settings["proxy_request_buffering"] == ["off"]
    assert settings["proxy_http_version"] == ["1.1"]
    timeout = _compose_gateway_config().upstream.timeout_seconds
    assert timeout >= 240  # image calls of several minutes
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        assert _seconds(settings[directive][0]) > timeout, directive


def test_compose_stops_a_replica_only_once_its_slowest_call_is_done() -> None:
    """stop_grace_period outlasts the drain: the grace for calls under way (which covers a
    whole upstream call), the grace once more for calls whose callers left (none outlives
    the upstream timeout), then closing."""
    config = _compose_gateway_config()
    grace, timeout = config.limits.shutdown_grace_seconds, config.upstream.timeout_seconds
    assert grace >= timeout
    stop = _seconds(_services()["gateway-1"]["stop_grace_period"])
    assert grace + min(grace, timeout) + 20 <= stop


def test_load_balancer_never_redirects() -> None:
    """No rewrite, redirecting return or absolute redirect: an SDK would turn a POST into a GET."""
    for directive in _nginx_directives():
        assert directive[0] != "rewrite", directive
        if directive[0] == "return":
            assert not directive[1].startswith("3"), directive
    settings = {d[0]: d[1:] for d in _nginx_directives()}
    assert settings["absolute_redirect"] == ["off"]


def _upstream_block() -> list[list[str]]:
    """The directives inside nginx's `upstream gateway { ... }` block."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))
    match = re.search(r"upstream\s+gateway\s*\{([^}]*)\}", text)
    assert match, "no upstream gateway block"
    return [part.split() for part in match[1].split(";") if part.strip()]


def _seconds(value: str) -> float:
    """An nginx time (`30s`, `1m`, `500ms`, `5`) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match, f"not an nginx time: {value}"
    number, unit = match.groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]


def _retry_after_of_own_502() -> int:
    text = NGINX_CONF.read_text(encoding="utf-8")
    block = re.search(r"location @unavailable \{([^}]*)\}", text)
    assert block
    retry_after = re.search(r"add_header Retry-After (\d+)", block[1])
    assert retry_after, "no Retry-After in the @unavailable block"
    return int(retry_after[1])


def test_a_replica_that_is_back_takes_traffic_within_the_callers_retry() -> None:
    """Failure accounting never outlasts the Retry-After of nginx's own 502, so after both
    replicas were down, the callers' retries reach the first one back (no ~13 s outage)."""
    servers = [d for d in _upstream_block() if d[0] == "server"]
    assert len(servers) == len(GATEWAY_SERVICES)
    for server in servers:
        params = dict(param.split("=", 1) for param in server[2:] if "=" in param)
        if params.get("max_fails") == "0":
            continue  # no failure accounting at all
        assert _seconds(params.get("fail_timeout", "10s")) <= _retry_after_of_own_502(), server


def test_only_a_refused_connection_is_retried_on_the_other_replica() -> None:
    """proxy_next_upstream is `error` alone, never `non_idempotent`, timeouts or the gateway's
    own error statuses: a POST that may have reached a gateway is never sent twice."""
    settings = {d[0]: d[1:] for d in _nginx_directives()}
    assert settings["proxy_next_upstream"] == ["error"]
    assert settings["proxy_next_upstream_tries"] == ["2"]


def test_nginx_closes_idle_upstream_connections_before_the_gateway_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nginx's upstream keepalive_timeout is shorter than the keep-alive `gateway serve` gives
    uvicorn, so nginx never reuses a connection the gateway is closing."""
    from support.serve import serve_until_uvicorn

    (timeout,) = [d[1] for d in _upstream_block() if d[0] == "keepalive_timeout"]
    for name in ("GATEWAY_PUBLIC_URL", "GATEWAY_DEMO_KEY", "GATEWAY_CONFIG", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    options = serve_until_uvicorn(
        monkeypatch, "--config", str(CONFIG / "gateway.yaml"), "--port", "0"
    )
    assert options is not None
    assert _seconds(timeout) < options["timeout_keep_alive"]


def test_restarts_are_one_replica_at_a_time_in_compose_and_readme() -> None:
    """Every `docker compose restart` the compose file or the README suggests names one
    replica: restarting both at once is an outage."""
    for path in (COMPOSE_FILE, ROOT / "README.md"):
        commands = re.findall(r"docker compose restart ([^&;\n`]*)", path.read_text("utf-8"))
        assert commands, path
        for command in commands:
            replicas = [word for word in command.split() if word in GATEWAY_SERVICES or "$" in word]
            assert len(replicas) == 1, (path, command)


# --- Prometheus and alerts ----------------------------------------------------------------


def test_a_new_upstream_key_is_rolled_out_one_recreated_replica_at_a_time() -> None:
    """The README and the compose file say how a new OPENAI_API_KEY reaches the replicas:
    `docker compose up` (which recreates a container whose environment changed, where
    `restart` keeps the old key), one replica per command, waiting for each."""
    for path in (COMPOSE_FILE, ROOT / "README.md"):
        text = path.read_text("utf-8")
        loops = re.findall(r"for r in ([\w\s-]+); do (docker compose up [^;\n]*); done", text)
        assert loops, path
        for replicas, command in loops:
            assert replicas.split() == list(GATEWAY_SERVICES), (path, replicas)
            assert command.split()[3:] == ["-d", "--no-deps", "--wait", "$r"], (path, command)


def test_prometheus_scrapes_each_replica_directly() -> None:
    """Every replica is a scrape target at /metrics every 15 s, not the load balancer."""
    config = _load_yaml(PROMETHEUS_CONFIG)
    assert config["global"]["scrape_interval"] == "15s"
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    assert targets == {f"{name}:{GATEWAY_PORT}" for name in GATEWAY_SERVICES}


def test_prometheus_loads_the_alert_rules_compose_mounts() -> None:
    """The rule file Prometheus loads is the one compose mounts next to its config."""
    config = _load_yaml(PROMETHEUS_CONFIG)
    mounts = _mounts(_services()["prometheus"])
    config_dir = Path(next(t for t, s in mounts.items() if s.endswith("prometheus.yml"))).parent
    for rule_file in config["rule_files"]:
        target = str(config_dir / rule_file)
        assert mounts[target].endswith("config/alerts.yml")


def test_alert_rules_cover_the_failure_modes() -> None:
    """There are alerts for quotas, upstream errors, the store, latency, replicas, the cache
    and the upstream's models."""
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    used = {name: metric_names(expr) for name, expr in exprs.items()}
    every = set().union(*used.values())
    assert {"gateway_quota_remaining", "gateway_quota_limit"} <= every
    assert {"gateway_store_errors_total", "gateway_cache_requests_total", "up"} <= every
    assert "gateway_request_duration_seconds_bucket" in every
    assert any('outcome="upstream_error"' in expr for expr in exprs.values())
    assert {
        "gateway_upstream_model_available",
        "gateway_upstream_model_shutdown_timestamp_seconds",
        "gateway_upstream_model_watch_failures_total",
    } <= every
    assert all(rule["labels"]["severity"] for rule in alert_rules())


def test_prometheus_config_and_rules_pass_promtool() -> None:
    """`promtool check config` (which loads the rules) and `promtool check rules` succeed."""
    tool = promtool()
    for args in (["check", "config", str(PROMETHEUS_CONFIG)], ["check", "rules", str(ALERT_RULES)]):
        result = _run([*tool, *args])
        assert result.returncode == 0, result.stdout + result.stderr


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _quota_series(instance: str) -> list[dict[str, str]]:
    base = {"job": "gateway", "instance": instance}
    team = {**base, "scope": "team", "subject": "vision", "unit": "usd", "window": "month"}
    alice = {**base, "scope": "user", "subject": "alice", "unit": "images", "window": "day"}
    bob = {**base, "scope": "user", "subject": "bob", "unit": "requests", "window": "minute"}
    return [
        _series("gateway_quota_limit", team, "50x15"),
        _series("gateway_quota_remaining", team, "4x15"),
        _series("gateway_quota_limit", alice, "500x15"),
        _series("gateway_quota_remaining", alice, "400x15"),
        _series("gateway_quota_limit", bob, "60x15"),
        _series("gateway_quota_remaining", bob, "1x15"),
    ]


def _alert_unit_tests() -> dict[str, Any]:
    up = [
        _series("up", {"job": "gateway", "instance": "gateway-1:8080"}, "1x15"),
        _series("up", {"job": "gateway", "instance": "gateway-2:8080"}, "0x15"),
    ]
    traffic = [
        _series("gateway_requests_total", {"job": "gateway", "outcome": "ok"}, "0+60x30"),
        _series(
            "gateway_requests_total", {"job": "gateway", "outcome": "upstream_error"}, "0+6x30"
        ),
        _series("gateway_requests_total", {"job": "gateway", "outcome": "store_error"}, "0x30"),
    ]
    team_alert = {"severity": "warning", "scope": "team", "subject": "vision"}
    return {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _quota_series("gateway-1:8080") + _quota_series("gateway-2:8080"),
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "GatewayQuotaNearlyExhausted",
                        "exp_alerts": [
                            {
                                "exp_labels": {**team_alert, "unit": "usd", "window": "month"},
                                "exp_annotations": {
                                    "summary": "team vision has under 10% of its usd per "
                                    "month quota left",
                                    "description": "8% remaining; requests will be refused with "
                                    "429 insufficient_quota when it runs out.",
                                },
                            }
                        ],
                    }
                ],
            },
            {
                "interval": "1m",
                "input_series": up + traffic,
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "GatewayReplicaDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "gateway",
                                    "instance": "gateway-2:8080",
                                },
                                "exp_annotations": {
                                    "summary": "Gateway replica gateway-2:8080 is down",
                                    "description": "Prometheus cannot scrape gateway-2:8080; the "
                                    "load balancer sends all traffic to the other replica.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "20m", "alertname": "GatewayQuotaStoreErrors", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "GatewayUpstreamErrorRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": {
                                    "summary": "Over 5% of upstream calls fail",
                                    "description": "9.091% of requests forwarded to OpenAI ended "
                                    "in an upstream error (502/504 to callers).",
                                },
                            }
                        ],
                    },
                ],
            },
        ],
    }


def test_alerts_fire_on_the_right_series(tmp_path: Path) -> None:
    """Quota alerts fire once per rule across replicas and skip minute windows; a dead replica
    and a 9% upstream error rate alert, idle store errors do not."""
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump(_alert_unit_tests(), sort_keys=False))
    result = _run([*promtool(), "test", "rules", str(tests)])
    assert result.returncode == 0, result.stdout + result.stderr


def _model_series(
    name: str, model: str, values: str, instance: str = "gateway-1:8080"
) -> dict[str, str]:
    return _series(name, {"job": "gateway", "instance": instance, "model": model}, values)


SHUTDOWN_AT = 40 * 86400  # 40 days after the test's time 0


def _model_alert_tests() -> dict[str, Any]:
    shutdown = [
        _model_series(
            "gateway_upstream_model_shutdown_timestamp_seconds",
            "gpt-image-2",
            f"{SHUTDOWN_AT}x300",
            i,
        )
        for i in ("gateway-1:8080", "gateway-2:8080")
    ]
    available = [
        _model_series("gateway_upstream_model_available", "gpt-image-2", "1 1 0x10"),
        _model_series("gateway_upstream_model_available", "gpt-image-2", "1x12", "gateway-2:8080"),
        _model_series("gateway_upstream_model_available", "gpt-image-2.5-flare", "1x12"),
    ]
    failing = [_series("gateway_upstream_model_watch_failures_total", {"job": "gateway"}, "0+1x40")]
    soon = {"severity": "warning", "model": "gpt-image-2"}
    return {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1h",
                "input_series": shutdown,
                "alert_rule_test": [
                    {
                        "eval_time": "9d",
                        "alertname": "GatewayUpstreamModelShutdownSoon",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "11d",
                        "alertname": "GatewayUpstreamModelShutdownSoon",
                        "exp_alerts": [
                            {
                                "exp_labels": soon,
                                "exp_annotations": {
                                    "summary": "The upstream shuts the model gpt-image-2 down on "
                                    "1970-02-10 00:00:00 +0000 UTC",
                                    "description": "Put another model first before then "
                                    "(gateway models set, or upstream.edits.models): calls "
                                    "still going to gpt-image-2 fail over one refusal per "
                                    "replica once it is gone, and get 503 when no model is "
                                    "left.",
                                },
                            }
                        ],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": available,
                "alert_rule_test": [
                    {
                        "eval_time": "1m",
                        "alertname": "GatewayUpstreamModelUnavailable",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "2m",
                        "alertname": "GatewayUpstreamModelUnavailable",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "model": "gpt-image-2"},
                                "exp_annotations": {
                                    "summary": "The upstream no longer has the model gpt-image-2",
                                    "description": "Calls go to the next model of the list, and "
                                    "get 503 upstream_model_unavailable when none is left. Change "
                                    "the list (gateway models set) or the upstream's access to the "
                                    "model.",
                                },
                            }
                        ],
                    },
                ],
            },
            {
                "interval": "5m",
                "input_series": failing,
                "alert_rule_test": [
                    {
                        "eval_time": "50m",
                        "alertname": "GatewayUpstreamModelWatchFailing",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "100m",
                        "alertname": "GatewayUpstreamModelWatchFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {
                                    "summary": "The gateway cannot read the upstream's /models",
                                    "description": "Shutdown dates and availability are not being "
                                    "learned; the logs (gateway.models) say why. Requests are not "
                                    "affected.",
                                },
                            }
                        ],
                    },
                ],
            },
        ],
    }


def test_model_alerts_fire_30_days_ahead_and_at_once(tmp_path: Path) -> None:
    """A model's shutdown date alerts from 30 days ahead (not 31), once across replicas; a
    model unavailable on one replica alerts at the first evaluation; /models failing for an
    hour alerts."""
    tests = tmp_path / "model_alerts_test.yml"
    tests.write_text(yaml.safe_dump(_model_alert_tests(), sort_keys=False))
    result = _run([*promtool(), "test", "rules", str(tests)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Alertmanager -------------------------------------------------------------------------

# Characters a sed replacement or a YAML plain scalar could trip on, all legal in a URL.
# Where the container writes the rendered config: its tmpfs, not the image or a volume.
RENDERED = "/tmp/alertmanager.yml"  # noqa: S108 - a path inside the container
WEBHOOK_URL = "https://hooks.example.com/services/T0/B0/x?a=1&b=2|c\\d#e"


def _render(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run render.sh as the Alertmanager container does, into tmp_path/alertmanager.yml."""
    sh = shutil.which("sh")
    assert sh, "a POSIX sh is needed"
    target = tmp_path / "alertmanager.yml"
    return _run([sh, str(ALERTMANAGER_RENDER), str(ALERTMANAGER_CONFIG), str(target)], env)


def _rendered(tmp_path: Path) -> Path:
    env = {**_environ_without_secrets(), "ALERT_WEBHOOK_URL": WEBHOOK_URL}
    result = _render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    return tmp_path / "alertmanager.yml"


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    """The config, rendered with a webhook URL as the container renders it, passes
    `amtool check-config`."""
    result = _run([*_amtool(), "check-config", str(_rendered(tmp_path))])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_are_posted_to_the_webhook_url_from_the_environment(tmp_path: Path) -> None:
    """Every route ends at the receiver whose webhook URL is ALERT_WEBHOOK_URL, byte for byte,
    and resolved alerts are posted too."""
    config = _load_yaml(_rendered(tmp_path))
    (receiver,) = config["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == WEBHOOK_URL
    assert webhook["send_resolved"] is True
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {route.get("receiver", receiver["name"]) for route in routes} == {receiver["name"]}
    assert WEBHOOK_URL not in ALERTMANAGER_CONFIG.read_text(encoding="utf-8")


def test_alertmanager_refuses_to_start_without_its_webhook_url(tmp_path: Path) -> None:
    """Without ALERT_WEBHOOK_URL, rendering fails naming it and writes no config."""
    result = _render(tmp_path, _environ_without_secrets())
    assert result.returncode != 0
    assert "ALERT_WEBHOOK_URL" in result.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


def test_compose_runs_alertmanager_on_the_rendered_config() -> None:
    """Compose mounts the config directory, renders it to the tmpfs and starts Alertmanager on
    the rendered file, with the URL from the environment."""
    service = _services()["alertmanager"]
    mounts = _mounts(service)
    assert mounts["/etc/alertmanager"].endswith("config/alertmanager")
    entrypoint = " ".join(service["entrypoint"])
    render = f"/etc/alertmanager/{ALERTMANAGER_RENDER.name}"
    template = f"/etc/alertmanager/{ALERTMANAGER_CONFIG.name}"
    assert f"{render} {template} {RENDERED}" in entrypoint
    assert f"--config.file={RENDERED}" in entrypoint
    assert str(Path(RENDERED).parent) in service["tmpfs"]
    assert _environment(service)["ALERT_WEBHOOK_URL"].startswith("${ALERT_WEBHOOK_URL:?")


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    """Prometheus's `alerting:` block targets the compose Alertmanager service."""
    config = _load_yaml(PROMETHEUS_CONFIG)
    (manager,) = config["alerting"]["alertmanagers"]
    targets = {target for group in manager["static_configs"] for target in group["targets"]}
    assert targets == {"alertmanager:9093"}
    assert "alertmanager" in _services()


# --- Grafana ------------------------------------------------------------------------------


def test_metric_names_reads_selectors_not_functions_labels_or_variables() -> None:
    """The extractor returns only series names, skipping functions, label names and values."""
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(gateway_a_bucket{result=~"hit|up"}'
        "[$__rate_interval]))) / on(team) group_left max without (instance) (up offset 5m)"
        " and ignoring(x) gateway_b > bool 1e3 or vector(1)"
        ' unless label_replace(c, "d", "", "e", "")'
    )
    assert metric_names(expr) == {"gateway_a_bucket", "up", "gateway_b", "c"}


def test_dashboard_and_alerts_query_only_spec_metrics() -> None:
    """Every series the dashboard and the alerts query is a SPEC 6.5 metric or a histogram part."""
    names = queried_metric_names()
    assert names, "no queries found"
    assert names <= allowed_series(), sorted(names - allowed_series())


def test_dashboard_shows_quotas_cache_latency_and_errors() -> None:
    """The dashboard charts quota used/remaining/limit per user and team, cache hits,
    request rate by outcome, request and upstream latency, and upstream errors."""
    exprs = dashboard_exprs()
    names = set().union(*(metric_names(expr) for expr in exprs))
    assert {
        "gateway_quota_used",
        "gateway_quota_remaining",
        "gateway_quota_limit",
        "gateway_cache_requests_total",
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_upstream_duration_seconds_bucket",
    } <= names
    quota = [expr for expr in exprs if "gateway_quota_" in expr]
    assert any('scope="user"' in expr for expr in quota)
    assert any('scope="team"' in expr for expr in quota)
    assert any("histogram_quantile(0.99" in expr for expr in exprs)
    assert any("histogram_quantile(0.5" in expr for expr in exprs)
    assert any('outcome="upstream_error"' in expr for expr in exprs)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query parses as PromQL once Grafana's variables are filled in."""
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$unit": ".*", "$window": ".*"}
    rules = []
    for index, expr in enumerate(dashboard_exprs()):
        for variable, value in fill.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run([*promtool(), "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_a_provisionable_grafana_dashboard() -> None:
    """The dashboard has a uid, a current schema, unique panel ids and laid-out panels."""
    dashboard = _load_dashboard()
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    """The datasource is the compose Prometheus, with the uid the panels use, and the
    dashboard provider reads the directory compose mounts the dashboard into."""
    (source,) = _load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    uids = {
        node["datasource"]["uid"]
        for node in _walk(_load_dashboard()["panels"])
        if isinstance(node.get("datasource"), dict)
    }
    assert uids == {source["uid"]}
    (provider,) = _load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = _mounts(_services()["grafana"])
    assert mounts[provider["options"]["path"]].endswith("config/grafana/dashboards")
    assert mounts["/etc/grafana/provisioning"].endswith("config/grafana/provisioning")
