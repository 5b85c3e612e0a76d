"""The Kubernetes manifests (deploy/kubernetes), rendered by kustomize as `kubectl apply -k`
renders them, checked against the Kubernetes API schemas and against what they must agree
with: the gateway's ports, probes and config, the grace of a drain, the bench's figures,
the compose deployment's alert rules, and the Secrets they name.

Rendering needs kustomize v5 (`kubectl kustomize` or `kustomize`): on a laptop without it
these tests skip; with CI set they fail. The Prometheus Operator's kinds (PodMonitor,
PrometheusRule) have no Kubernetes API schema: they are checked field by field here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.testclient import TestClient
from support.deploy_files import (
    DOCKERFILE,
    GATEWAY_CONFIG,
    GATEWAY_PORT,
    ROOT,
    alert_rules,
    promtool,
    require_tool,
)
from support.k8s_files import (
    ADAPTER_RULES,
    ALERT_RULES,
    BASE,
    BASE_CONFIG,
    KUBERNETES,
    KUSTOMIZE_MAJOR,
    OPERATOR_KINDS,
    OVERLAYS,
    PROMETHEUS_RULE,
    Kustomize,
    kustomize,
    prometheus_rule_text,
    render,
)

from gateway.settings import GatewayConfig, read_config
from gateway.store.urls import parse_url

# The oldest Kubernetes minor still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
SECRET_NAME = "gateway-secrets"
# What an operator puts in gateway-secrets, as shapes the gateway accepts.
SAMPLE_SECRETS = {
    "OPENAI_API_KEY": "dummy-openai-api-key",
    "GATEWAY_USER_SECRET": "dummy-gateway-user-secret",
    "GATEWAY_METRICS_TOKEN": "dummy-metrics-token",
    "REDIS_URL": "rediss://gateway:dummy-password@redis.example.com:6380/0",
    "CACHE_REDIS_URL": "rediss://gateway:dummy-password@redis-cache.example.com:6380/0",
}
# bench/README.md, "Capacity against a slow upstream (issue 15)": a worker starts at about
# 76 MB, and each request waiting on the upstream adds about 90 KiB (an upper bound); the
# memory cell, 200 concurrent 3.9 MB uploads with the 64 MB upload budget full, peaked at
# 218 MB, so a full budget costs about 142 MB over rest. MB read as MiB, to round up.
REST_MIB = 76
WAITING_KIB = 90
FULL_UPLOAD_BUDGET_MIB_PER_MB = (218 - 76) / 64
KUSTOMIZE_HINT = (
    "`kubectl kustomize` or `kustomize`, from kubectl's or kustomize's own releases: "
    "Debian's kubernetes-client 1.20 bundles kustomize v2, too old to render these"
)
# Managed Redis services take TLS on 6379 or 6380: the managed-redis overlay opens both.
MANAGED_REDIS_PORTS = {6379, 6380}
# After the drain: the ledger's last refunds (up to 5 s) and the Redis clients closing.
CLOSING_SECONDS = 10


def _tool() -> Kustomize:
    """kustomize v5, or skip (fail in CI)."""
    tool = kustomize()
    usable = tool if tool is not None and tool.major >= KUSTOMIZE_MAJOR else None
    require_tool(
        f"kustomize v{KUSTOMIZE_MAJOR}", list(usable.command) if usable else None, KUSTOMIZE_HINT
    )
    assert usable is not None
    return usable


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay's manifests, rendered once."""
    tool = _tool()
    return {name: render(path, tool) for name, path in OVERLAYS.items()}


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _gateway_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = _one(docs, "Deployment", "gateway")["spec"]["template"]
    return pod


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _gateway_pod(docs)["spec"]["containers"]
    return dict(container)


def _env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in _container(docs)["env"]}


def _config_text(docs: list[dict[str, Any]]) -> str:
    volumes = {v["name"]: v for v in _gateway_pod(docs)["spec"]["volumes"]}
    name = volumes["config"]["configMap"]["name"]
    return str(_one(docs, "ConfigMap", name)["data"]["gateway.yaml"])


def _config(docs: list[dict[str, Any]], tmp_path: Path) -> tuple[Path, GatewayConfig]:
    """The gateway config the overlay's ConfigMap carries, as a file and as the gateway reads it."""
    path = tmp_path / "gateway.yaml"
    path.write_text(_config_text(docs), encoding="utf-8")
    return path, read_config(path)


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_overlay_passes_the_kubernetes_api_schemas(
    rendered: dict[str, list[dict[str, Any]]], version: str
) -> None:
    """Every rendered manifest but the Prometheus Operator's own kinds passes the API schema
    of its kind, strictly (no unknown field), on the oldest and newest Kubernetes checked."""
    for name, docs in rendered.items():
        skipped = set()
        for doc in docs:
            if doc["kind"] in OPERATOR_KINDS:
                skipped.add(doc["kind"])
                continue
            kubernetes_validate.validate(doc, version, strict=True)
        assert skipped == OPERATOR_KINDS, name


def test_the_schema_check_refuses_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The strict check is live: a Deployment whose probe key is misspelt is refused."""
    docs = next(iter(rendered.values()))
    deployment = yaml.safe_load(yaml.safe_dump(_one(docs, "Deployment", "gateway")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_base_renders_and_the_overlays_are_the_two_documented() -> None:
    """The base renders on its own, and the overlays are exactly sentinel and managed-redis."""
    assert render(BASE, _tool())
    assert set(OVERLAYS) == {"sentinel", "managed-redis"}


# --- ports and probes -------------------------------------------------------------------


def test_one_port_from_the_image_to_the_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The gateway serves on 8080 (the image's port), named http in the pod, the Service,
    the PodMonitor and the NetworkPolicy."""
    for docs in rendered.values():
        container = _container(docs)
        assert container["ports"] == [
            {"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}
        ]
        assert _flag(container["args"], "--port") == str(GATEWAY_PORT)
        (port,) = _one(docs, "Service", "gateway")["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (GATEWAY_PORT, "http")
        (endpoint,) = _one(docs, "PodMonitor", "gateway")["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "http"
        policy = _one(docs, "NetworkPolicy", "gateway")["spec"]
        assert [p for rule in policy["ingress"] for p in rule["ports"]] == [
            {"port": "http", "protocol": "TCP"}
        ] * len(policy["ingress"])
    assert f"EXPOSE {GATEWAY_PORT}" in DOCKERFILE.read_text(encoding="utf-8")


def test_probes_use_the_gateways_health_endpoints(
    rendered: dict[str, list[dict[str, Any]]], client: TestClient
) -> None:
    """Readiness polls /readyz and liveness /healthz on the http port, and both paths
    answer 200 on the app."""
    for docs in rendered.values():
        container = _container(docs)
        probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        for probe, path in probes.items():
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    for path in ("/readyz", "/healthz"):
        assert client.get(path).status_code == 200, path


def test_the_drain_outlasts_the_slowest_call(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """preStop, then the shutdown grace for requests under way, then the grace once more
    for calls whose callers left (none outlives the upstream timeout), then closing: all
    within terminationGracePeriodSeconds; and the grace covers a whole upstream call."""
    for docs in rendered.values():
        _, config = _config(docs, tmp_path)
        pod = _gateway_pod(docs)["spec"]
        pre_stop = _container(docs)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        grace = config.limits.shutdown_grace_seconds
        timeout = config.upstream.timeout_seconds
        assert grace >= timeout
        drain = int(pre_stop[1]) + grace + min(grace, timeout) + CLOSING_SECONDS
        assert drain <= pod["terminationGracePeriodSeconds"]
        # The image calls are minutes long: the config says so, not the defaults.
        assert timeout >= 180


def test_a_wedged_gateway_is_replaced_without_waiting_out_the_drain(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """A failed liveness probe ends the container within its own short grace, not the
    pod's ten-minute one."""
    for docs in rendered.values():
        liveness = _container(docs)["livenessProbe"]
        assert liveness["terminationGracePeriodSeconds"] <= 30
        pod_grace = _gateway_pod(docs)["spec"]["terminationGracePeriodSeconds"]
        assert liveness["terminationGracePeriodSeconds"] < pod_grace


# --- the config the ConfigMap carries ---------------------------------------------------


def _differences(a: Any, b: Any, path: str = "") -> set[str]:
    """The dotted key paths where two parsed YAML trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = set()
        for key in set(a) | set(b):
            found |= _differences(a.get(key), b.get(key), f"{path}.{key}".lstrip("."))
        return found
    return set() if a == b else {path}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_kubernetes_config_is_composes_with_its_own_timeouts_and_token() -> None:
    """base/gateway.yaml differs from config/gateway.compose.yaml only in the upstream
    timeout, the drain grace and the metrics token: callers, quotas and prices are the same."""
    assert _differences(_load(BASE_CONFIG), _load(GATEWAY_CONFIG)) == {
        "upstream.timeout_seconds",
        "limits",
        "metrics.token_env",
    }


def test_the_managed_redis_config_is_the_base_one_plus_tls(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The managed-redis overlay's config differs from the base's only in store.redis,
    which trusts the CA the overlay mounts."""
    overlay = OVERLAYS["managed-redis"]
    config = _load(overlay / "gateway.yaml")
    assert _differences(config, _load(BASE_CONFIG)) == {"store.redis"}
    ca_file = Path(config["store"]["redis"]["tls"]["ca_file"])
    mounts = {m["name"]: m for m in _container(rendered["managed-redis"])["volumeMounts"]}
    assert mounts["redis-tls"]["mountPath"] == str(ca_file.parent)


def _environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The gateway container's environment, with the sample value of each Secret key."""
    env = {}
    for name, entry in _env(docs).items():
        if "value" in entry:
            env[name] = entry["value"]
        else:
            env[name] = SAMPLE_SECRETS[entry["valueFrom"]["secretKeyRef"]["key"]]
    return env


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_configmap_passes_gateway_config_check(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    """`gateway config check --require-env` accepts the rendered ConfigMap's config with the
    pod's environment (Secret keys at sample values)."""
    docs = rendered[overlay]
    path, _ = _config(docs, tmp_path)
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    env = {**keep, **_environment(docs)}
    command = [sys.executable, "-m", "gateway", "config", "check", "--require-env"]
    result = subprocess.run(
        [*command, "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _env(docs)["GATEWAY_CONFIG"]["value"] == _flag(_container(docs)["args"], "--config")


def test_every_variable_the_config_names_is_set_and_redis_is_shared(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The upstream key, the user secret and the metrics token come from gateway-secrets
    (required keys), and every overlay sets the store's Redis URL: no replica runs the
    in-process store, which would give each its own quotas."""
    for docs in rendered.values():
        _, config = _config(docs, tmp_path)
        env = _env(docs)
        for name in (
            config.upstream.api_key_env,
            config.identity.secret_env,
            config.metrics.token_env,
        ):
            assert name is not None
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"], ref.get("optional", False)) == (
                SECRET_NAME,
                name,
                False,
            )
        assert config.store.redis_url_env in env
        assert config.cache.redis_url_env in env


# --- secrets and security ---------------------------------------------------------------


def test_secrets_are_referenced_never_embedded(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """No overlay makes a Secret; secret-like variables are only references into
    gateway-secrets; literal Redis URLs carry no credentials."""
    secret_like = re.compile(r"KEY|SECRET|TOKEN|PASSWORD")
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] == "Secret"]
        for name, entry in _env(docs).items():
            if secret_like.search(name):
                assert entry["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME, name
            if name.endswith("REDIS_URL") and "value" in entry:
                assert "@" not in entry["value"], name


def test_no_credentials_in_the_kubernetes_files() -> None:
    """No file under deploy/kubernetes holds something shaped like a real credential."""
    credential = re.compile(
        r"sk-[A-Za-z0-9_-]{16,}|gwk_[A-Za-z0-9_-]{16,}|password:\s*\S|://[^\s<>/]+:[^\s<>@]+@"
    )
    for path in KUBERNETES.rglob("*"):
        if path.is_file():
            assert not credential.search(path.read_text(encoding="utf-8")), path


def _uid(dockerfile_user: str) -> int:
    return int(dockerfile_user.split(":")[0])


def test_every_pod_runs_unprivileged_on_a_read_only_filesystem(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Every pod runs as non-root without a service-account token, every container on a
    read-only root with no capabilities and no privilege escalation; the gateway as the
    image's own user, with /tmp in memory."""
    for docs in rendered.values():
        for name, pod in _pods(docs):
            spec = pod["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["automountServiceAccountToken"] is False, name
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"]["drop"] == ["ALL"], name
        spec = _gateway_pod(docs)["spec"]
        users = re.findall(r"^USER (\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
        assert spec["securityContext"]["runAsUser"] == _uid(users[-1])
        (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
        assert account["automountServiceAccountToken"] is False
        mounts = {m["mountPath"]: m["name"] for m in _container(docs)["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own /tmp


# --- resources, scaling, disruption -----------------------------------------------------


def _mib(quantity: str) -> float:
    """A memory quantity (Ki, Mi, Gi) in MiB."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[match[2]]


def _memory_for(config: GatewayConfig, in_flight: int) -> float:
    """MiB a worker needs with `in_flight` requests waiting and the upload budget full."""
    budget = config.limits.upload_buffer_mb * FULL_UPLOAD_BUDGET_MIB_PER_MB
    return REST_MIB + in_flight * WAITING_KIB / 1024 + budget


def _hpa_target(docs: list[dict[str, Any]]) -> tuple[str, int]:
    metrics = _one(docs, "HorizontalPodAutoscaler", "gateway")["spec"]["metrics"]
    (pods,) = [m["pods"] for m in metrics if m["type"] == "Pods"]
    return pods["metric"]["name"], int(pods["target"]["averageValue"])


def test_memory_is_sized_from_the_bench(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The memory limit holds limits.max_concurrent_requests waiting with the upload budget
    full, and the request holds the autoscaler's target, at the bench's figures."""
    for docs in rendered.values():
        _, config = _config(docs, tmp_path)
        resources = _container(docs)["resources"]
        limit = config.limits.max_concurrent_requests
        assert limit is not None
        assert _mib(resources["limits"]["memory"]) >= _memory_for(config, limit)
        _, target = _hpa_target(docs)
        assert _mib(resources["requests"]["memory"]) >= _memory_for(config, target)
        assert target < limit
        # One event loop: a core is all one process can use.
        assert resources["limits"]["cpu"] == "1"


def test_the_autoscaler_scales_on_in_flight_requests_from_the_adapter_rule(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The HPA scales the gateway Deployment (which leaves replicas to it) from 2 on the
    metric the prometheus-adapter rule serves, computed from a gateway series, and on CPU."""
    (rule,) = _load(ADAPTER_RULES)["rules"]
    series = re.match(r"[A-Za-z_:][\w:]*", rule["seriesQuery"])
    assert series and re.fullmatch(rule["name"]["matches"], series.group())
    assert series.group() == "gateway_request_duration_seconds_sum"
    for docs in rendered.values():
        hpa = _one(docs, "HorizontalPodAutoscaler", "gateway")["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "gateway",
        }
        assert "replicas" not in _one(docs, "Deployment", "gateway")["spec"]
        assert hpa["minReplicas"] >= 2
        assert _hpa_target(docs)[0] == rule["name"]["as"]
        assert {m["type"] for m in hpa["metrics"]} == {"Pods", "Resource"}


def test_the_adapter_query_is_valid_promql(tmp_path: Path) -> None:
    """The adapter rule's query, with its placeholders filled as the adapter fills them,
    passes `promtool check rules`."""
    (rule,) = _load(ADAPTER_RULES)["rules"]
    series = rule["seriesQuery"].split("{")[0].strip("'")
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", 'namespace="gw",pod=~"gateway-.*"')
        .replace("<<.GroupBy>>", "pod")
    )
    rules = {"groups": [{"name": "adapter", "rules": [{"record": "adapter:q", "expr": query}]}]}
    path = tmp_path / "adapter.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        [*promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_disruptions_take_one_gateway_at_a_time(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The PDB and the rolling update each take at most one gateway out of service, and
    the rollout adds the new pod before draining an old one."""
    for docs in rendered.values():
        pdb = _one(docs, "PodDisruptionBudget", "gateway")["spec"]
        deployment = _one(docs, "Deployment", "gateway")["spec"]
        assert pdb["maxUnavailable"] == 1
        assert pdb["selector"] == deployment["selector"]
        assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_image_tag_is_the_package_version(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The image the manifests run is the one the Dockerfile builds at this version."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8"), re.M)
    assert version
    for docs in rendered.values():
        assert _container(docs)["image"] == f"image-variations-gateway:{version.group(1)}"


# --- network ----------------------------------------------------------------------------


def _peers(rule: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(namespace name, pod app name) of each peer of an ingress rule."""
    found = []
    for peer in rule["from"]:
        namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
        pod = peer.get("podSelector", {}).get("matchLabels", {})
        found.append(
            (namespace.get("kubernetes.io/metadata.name"), pod.get("app.kubernetes.io/name"))
        )
    return found


def _egress_ports(docs: list[dict[str, Any]]) -> set[tuple[int, str]]:
    ports = set()
    for doc in docs:
        selector = doc["spec"]["podSelector"] if doc["kind"] == "NetworkPolicy" else None
        if selector != {"matchLabels": {"app.kubernetes.io/name": "gateway"}}:
            continue
        for rule in doc["spec"].get("egress", []):
            ports |= {(p["port"], p["protocol"]) for p in rule["ports"]}
    return ports


def _redis_ports(env: dict[str, str]) -> set[int]:
    """The ports of the Redis URLs the gateway is given."""
    urls = [env[name] for name in ("REDIS_URL", "CACHE_REDIS_URL")]
    return {int(port) for url in urls for _, port in parse_url(url).hosts}


def test_only_the_ingress_and_prometheus_reach_the_gateway(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The gateway's ingress admits the ingress controller's pods and Prometheus's, nothing
    else, and the policy covers both directions."""
    for docs in rendered.values():
        policy = _one(docs, "NetworkPolicy", "gateway")["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        peers = [peer for rule in policy["ingress"] for peer in _peers(rule)]
        assert peers == [("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")]


def test_the_gateway_reaches_dns_the_upstream_and_its_redis_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The gateway's egress is DNS, HTTPS, and Redis: the ports of the Redis URLs the
    overlay writes, or for URLs from the Secret the TLS ports managed Redis services use."""
    fixed = {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    for name, docs in rendered.items():
        literal = all("value" in _env(docs)[var] for var in ("REDIS_URL", "CACHE_REDIS_URL"))
        redis = _redis_ports(_environment(docs)) if literal else MANAGED_REDIS_PORTS
        assert _egress_ports(docs) == fixed | {(port, "TCP") for port in redis}, name
        assert _redis_ports(_environment(docs)) <= redis, name


def test_each_in_cluster_redis_admits_the_gateway_on_its_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """In the sentinel overlay every Redis pod's ingress policy admits the gateway on the
    port its Service serves."""
    docs = rendered["sentinel"]
    for app in ("redis-state", "redis-sentinel", "redis-cache"):
        (port,) = _one(docs, "Service", app)["spec"]["ports"]
        (rule,) = _one(docs, "NetworkPolicy", app)["spec"]["ingress"]
        assert (None, "gateway") in _peers(rule)
        assert rule["ports"] == [{"port": port["port"], "protocol": "TCP"}]


# --- Prometheus -------------------------------------------------------------------------


def test_the_prometheus_rule_is_the_compose_alert_rules() -> None:
    """base/prometheusrule.yaml is config/alerts.yml under `spec:`, byte for byte
    (regenerate with `python tests/support/k8s_files.py`)."""
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == prometheus_rule_text()
    spec = _load(PROMETHEUS_RULE)["spec"]
    assert spec["groups"] == _load(ALERT_RULES)["groups"]


def test_the_pod_monitor_scrapes_every_gateway_as_the_alerts_job(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The PodMonitor selects the gateway pods, scrapes /metrics with the token the config
    names, and labels them with the job the replica-down alert watches."""
    (down,) = [rule for rule in alert_rules() if rule["alert"] == "GatewayReplicaDown"]
    job = re.search(r'job="([^"]+)"', down["expr"])
    assert job
    for docs in rendered.values():
        monitor = _one(docs, "PodMonitor", "gateway")["spec"]
        labels = _gateway_pod(docs)["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        assert labels[monitor["jobLabel"]] == job.group(1)
        (endpoint,) = monitor["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        token = _env(docs)["GATEWAY_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert endpoint["authorization"]["credentials"] == token


# --- the README -------------------------------------------------------------------------


def test_the_readme_documents_each_overlay_and_every_secret_key(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The README's Kubernetes part applies each overlay with one `kubectl apply -k` and
    names every key of every Secret the manifests read."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("### Kubernetes") :]
    for name in OVERLAYS:
        assert f"kubectl apply -k deploy/kubernetes/overlays/{name}" in part, name
    for docs in rendered.values():
        refs = [e["valueFrom"]["secretKeyRef"] for e in _env(docs).values() if "valueFrom" in e]
        for ref in refs:
            assert ref["name"] in part and ref["key"] in part, ref
        for volume in _gateway_pod(docs)["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in part
