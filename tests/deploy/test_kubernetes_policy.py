"""The Kubernetes manifests (deploy/kubernetes), rendered by kustomize: what they hold
back and what they let through. Secrets only referenced, unprivileged pods, resources from
the bench's figures, the autoscaler's signal, the NetworkPolicies against the Redis URLs,
the Prometheus Operator's PodMonitor and PrometheusRule against the compose monitoring,
and the README against the Secrets the manifests read.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from support.deploy_files import DOCKERFILE, ROOT, alert_rules, promtool
from support.k8s_files import (
    ADAPTER_RULES,
    ALERT_RULES,
    KUBERNETES,
    OVERLAYS,
    PROMETHEUS_RULE,
    SECRET_NAME,
    Docs,
    gateway_config,
    gateway_container,
    gateway_env,
    gateway_environment,
    gateway_pod,
    load,
    one,
    pods,
    prometheus_rule_text,
)

from gateway.settings.config import GatewayConfig
from gateway.store.urls import parse_url

# bench/README.md, "Capacity against a slow upstream (issue 15)": a worker starts at about
# 76 MB, and each request waiting on the upstream adds about 90 KiB (an upper bound); the
# memory cell, 200 concurrent 3.9 MB uploads with the 64 MB upload budget full, peaked at
# 218 MB, so a full budget costs about 142 MB over rest. MB read as MiB, to round up.
REST_MIB = 76
WAITING_KIB = 90
FULL_UPLOAD_BUDGET_MIB_PER_MB = (218 - 76) / 64
# Managed Redis services take TLS on 6379 or 6380: the managed-redis overlay opens both.
MANAGED_REDIS_PORTS = {6379, 6380}


# --- secrets and security ---------------------------------------------------------------


def test_secrets_are_referenced_never_embedded(rendered: dict[str, Docs]) -> None:
    """No overlay makes a Secret; secret-like variables are only references into
    gateway-secrets; literal Redis URLs carry no credentials."""
    secret_like = re.compile(r"KEY|SECRET|TOKEN|PASSWORD")
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] == "Secret"]
        for name, entry in gateway_env(docs).items():
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
    rendered: dict[str, Docs],
) -> None:
    """Every pod runs as non-root without a service-account token, every container on a
    read-only root with no capabilities and no privilege escalation; the gateway as the
    image's own user, with /tmp in memory."""
    for docs in rendered.values():
        for name, pod in pods(docs):
            spec = pod["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["automountServiceAccountToken"] is False, name
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"]["drop"] == ["ALL"], name
        spec = gateway_pod(docs)["spec"]
        users = re.findall(r"^USER (\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
        assert spec["securityContext"]["runAsUser"] == _uid(users[-1])
        (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
        assert account["automountServiceAccountToken"] is False
        mounts = {m["mountPath"]: m["name"] for m in gateway_container(docs)["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        tmp = volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own /tmp
        assert tmp["emptyDir"]["medium"] == "Memory"


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


def _hpa_target(docs: Docs) -> tuple[str, int]:
    metrics = one(docs, "HorizontalPodAutoscaler", "gateway")["spec"]["metrics"]
    (metric,) = [m["pods"] for m in metrics if m["type"] == "Pods"]
    return metric["metric"]["name"], int(metric["target"]["averageValue"])


def test_memory_is_sized_from_the_bench(rendered: dict[str, Docs], tmp_path: Path) -> None:
    """The memory limit holds limits.max_concurrent_requests waiting with the upload budget
    full, and the request holds the autoscaler's target, at the bench's figures."""
    for docs in rendered.values():
        _, config = gateway_config(docs, tmp_path)
        resources = gateway_container(docs)["resources"]
        limit = config.limits.max_concurrent_requests
        assert limit is not None
        assert _mib(resources["limits"]["memory"]) >= _memory_for(config, limit)
        _, target = _hpa_target(docs)
        assert _mib(resources["requests"]["memory"]) >= _memory_for(config, target)
        assert target < limit
        # One event loop: a core is all one process can use.
        assert resources["limits"]["cpu"] == "1"


def test_the_autoscaler_scales_on_in_flight_requests_from_the_adapter_rule(
    rendered: dict[str, Docs],
) -> None:
    """The HPA scales the gateway Deployment (which leaves replicas to it) from 2 on the
    metric the prometheus-adapter rule serves, computed from a gateway series, and on CPU."""
    (rule,) = load(ADAPTER_RULES)["rules"]
    series = re.match(r"[A-Za-z_:][\w:]*", rule["seriesQuery"])
    assert series and re.fullmatch(rule["name"]["matches"], series.group())
    assert series.group() == "gateway_request_duration_seconds_sum"
    for docs in rendered.values():
        hpa = one(docs, "HorizontalPodAutoscaler", "gateway")["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "gateway",
        }
        assert "replicas" not in one(docs, "Deployment", "gateway")["spec"]
        assert hpa["minReplicas"] >= 2
        assert _hpa_target(docs)[0] == rule["name"]["as"]
        assert {m["type"] for m in hpa["metrics"]} == {"Pods", "Resource"}


def test_the_adapter_query_is_valid_promql(tmp_path: Path) -> None:
    """The adapter rule's query, with its placeholders filled as the adapter fills them,
    passes `promtool check rules`."""
    (rule,) = load(ADAPTER_RULES)["rules"]
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


def test_disruptions_take_one_gateway_at_a_time(rendered: dict[str, Docs]) -> None:
    """The PDB and the rolling update each take at most one gateway out of service, and
    the rollout adds the new pod before draining an old one."""
    for docs in rendered.values():
        pdb = one(docs, "PodDisruptionBudget", "gateway")["spec"]
        deployment = one(docs, "Deployment", "gateway")["spec"]
        assert pdb["maxUnavailable"] == 1
        assert pdb["selector"] == deployment["selector"]
        assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_image_tag_is_the_package_version(rendered: dict[str, Docs]) -> None:
    """The image the manifests run is the one the Dockerfile builds at this version."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8"), re.M)
    assert version
    for docs in rendered.values():
        assert gateway_container(docs)["image"] == f"image-variations-gateway:{version.group(1)}"


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


def _egress_ports(docs: Docs) -> set[tuple[int, str]]:
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
    rendered: dict[str, Docs],
) -> None:
    """The gateway's ingress admits the ingress controller's pods and Prometheus's, nothing
    else, and the policy covers both directions."""
    for docs in rendered.values():
        policy = one(docs, "NetworkPolicy", "gateway")["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        peers = [peer for rule in policy["ingress"] for peer in _peers(rule)]
        assert peers == [("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")]


def test_the_gateway_reaches_dns_the_upstream_and_its_redis_only(
    rendered: dict[str, Docs],
) -> None:
    """The gateway's egress is DNS, HTTPS, and Redis: the ports of the Redis URLs the
    overlay writes, or for URLs from the Secret the TLS ports managed Redis services use."""
    fixed = {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    for name, docs in rendered.items():
        literal = all("value" in gateway_env(docs)[var] for var in ("REDIS_URL", "CACHE_REDIS_URL"))
        redis = _redis_ports(gateway_environment(docs)) if literal else MANAGED_REDIS_PORTS
        assert _egress_ports(docs) == fixed | {(port, "TCP") for port in redis}, name
        assert _redis_ports(gateway_environment(docs)) <= redis, name


def test_each_in_cluster_redis_admits_the_gateway_on_its_port(
    rendered: dict[str, Docs],
) -> None:
    """In the sentinel overlay every Redis pod's ingress policy admits the gateway on the
    port its Service serves."""
    docs = rendered["sentinel"]
    for app in ("redis-state", "redis-sentinel", "redis-cache"):
        (port,) = one(docs, "Service", app)["spec"]["ports"]
        (rule,) = one(docs, "NetworkPolicy", app)["spec"]["ingress"]
        assert (None, "gateway") in _peers(rule)
        assert rule["ports"] == [{"port": port["port"], "protocol": "TCP"}]


# --- Prometheus -------------------------------------------------------------------------


def test_the_prometheus_rule_is_the_compose_alert_rules() -> None:
    """base/prometheusrule.yaml is config/alerts.yml under `spec:`, byte for byte
    (regenerate with `python tests/support/k8s_files.py`)."""
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == prometheus_rule_text()
    spec = load(PROMETHEUS_RULE)["spec"]
    assert spec["groups"] == load(ALERT_RULES)["groups"]


def test_the_pod_monitor_scrapes_every_gateway_as_the_alerts_job(
    rendered: dict[str, Docs],
) -> None:
    """The PodMonitor selects the gateway pods, scrapes /metrics with the token the config
    names, and labels them with the job the replica-down alert watches."""
    (down,) = [rule for rule in alert_rules() if rule["alert"] == "GatewayReplicaDown"]
    job = re.search(r'job="([^"]+)"', down["expr"])
    assert job
    for docs in rendered.values():
        monitor = one(docs, "PodMonitor", "gateway")["spec"]
        labels = gateway_pod(docs)["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        assert labels[monitor["jobLabel"]] == job.group(1)
        (endpoint,) = monitor["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        token = gateway_env(docs)["GATEWAY_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert endpoint["authorization"]["credentials"] == token


# --- the README -------------------------------------------------------------------------


def test_the_readme_documents_each_overlay_and_every_secret_key(
    rendered: dict[str, Docs],
) -> None:
    """The README's Kubernetes part applies each overlay with one `kubectl apply -k` and
    names every key of every Secret the manifests read."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("### Kubernetes") :]
    for name in OVERLAYS:
        assert f"kubectl apply -k deploy/kubernetes/overlays/{name}" in part, name
    for docs in rendered.values():
        refs = [
            e["valueFrom"]["secretKeyRef"] for e in gateway_env(docs).values() if "valueFrom" in e
        ]
        for ref in refs:
            assert ref["name"] in part and ref["key"] in part, ref
        for volume in gateway_pod(docs)["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in part
