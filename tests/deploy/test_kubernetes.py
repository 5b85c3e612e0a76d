"""The Kubernetes manifests (deploy/kubernetes), rendered by kustomize as `kubectl apply -k`
renders them: the Kubernetes API schemas, and what they must agree with in the gateway
itself: its port, its probes, the grace of a drain and the config the ConfigMap carries.

Rendering needs kustomize v5 (`kubectl kustomize` or `kustomize`): on a laptop without it
these tests skip; with CI set they fail. The Prometheus Operator's kinds (PodMonitor,
PrometheusRule) have no Kubernetes API schema: test_kubernetes_policy.py checks them field
by field.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.testclient import TestClient
from support.deploy_files import DOCKERFILE, GATEWAY_CONFIG, GATEWAY_PORT, ROOT
from support.k8s_files import (
    BASE,
    BASE_CONFIG,
    OPERATOR_KINDS,
    OVERLAYS,
    SECRET_NAME,
    Docs,
    flag,
    gateway_config,
    gateway_container,
    gateway_env,
    gateway_environment,
    gateway_pod,
    load,
    one,
    render,
    require_kustomize,
)

# The oldest Kubernetes minor still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
# After the drain: the ledger's last refunds (up to 5 s) and the Redis clients closing.
CLOSING_SECONDS = 10


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_overlay_passes_the_kubernetes_api_schemas(
    rendered: dict[str, Docs], version: str
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
    rendered: dict[str, Docs],
) -> None:
    """The strict check is live: a Deployment whose probe key is misspelt is refused."""
    docs = next(iter(rendered.values()))
    deployment = yaml.safe_load(yaml.safe_dump(one(docs, "Deployment", "gateway")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_base_renders_and_the_overlays_are_the_two_documented() -> None:
    """The base renders on its own, and the overlays are exactly sentinel and managed-redis."""
    assert render(BASE, require_kustomize())
    assert set(OVERLAYS) == {"sentinel", "managed-redis"}


# --- ports and probes -------------------------------------------------------------------


def test_one_port_from_the_image_to_the_service(rendered: dict[str, Docs]) -> None:
    """The gateway serves on 8080 (the image's port), named http in the pod, the Service,
    the PodMonitor and the NetworkPolicy."""
    for docs in rendered.values():
        container = gateway_container(docs)
        assert container["ports"] == [
            {"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}
        ]
        assert flag(container["args"], "--port") == str(GATEWAY_PORT)
        (port,) = one(docs, "Service", "gateway")["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (GATEWAY_PORT, "http")
        (endpoint,) = one(docs, "PodMonitor", "gateway")["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "http"
        policy = one(docs, "NetworkPolicy", "gateway")["spec"]
        assert [p for rule in policy["ingress"] for p in rule["ports"]] == [
            {"port": "http", "protocol": "TCP"}
        ] * len(policy["ingress"])
    assert f"EXPOSE {GATEWAY_PORT}" in DOCKERFILE.read_text(encoding="utf-8")


def test_probes_use_the_gateways_health_endpoints(
    rendered: dict[str, Docs], client: TestClient
) -> None:
    """Readiness polls /readyz and liveness /healthz on the http port, and both paths
    answer 200 on the app."""
    for docs in rendered.values():
        container = gateway_container(docs)
        probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        for probe, path in probes.items():
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    for path in ("/readyz", "/healthz"):
        assert client.get(path).status_code == 200, path


def test_the_drain_outlasts_the_slowest_call(rendered: dict[str, Docs], tmp_path: Path) -> None:
    """preStop, then the shutdown grace for requests under way, then the grace once more
    for calls whose callers left (none outlives the upstream timeout), then closing: all
    within terminationGracePeriodSeconds; and the grace covers a whole upstream call."""
    for docs in rendered.values():
        _, config = gateway_config(docs, tmp_path)
        pod = gateway_pod(docs)["spec"]
        pre_stop = gateway_container(docs)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        grace = config.limits.shutdown_grace_seconds
        timeout = config.upstream.timeout_seconds
        assert grace >= timeout
        drain = int(pre_stop[1]) + grace + min(grace, timeout) + CLOSING_SECONDS
        assert drain <= pod["terminationGracePeriodSeconds"]
        # The image calls are minutes long: the config says so, not the defaults.
        assert timeout >= 180


def test_a_wedged_gateway_is_replaced_without_waiting_out_the_drain(
    rendered: dict[str, Docs],
) -> None:
    """A failed liveness probe ends the container within its own short grace, not the
    pod's ten-minute one."""
    for docs in rendered.values():
        liveness = gateway_container(docs)["livenessProbe"]
        assert liveness["terminationGracePeriodSeconds"] <= 30
        pod_grace = gateway_pod(docs)["spec"]["terminationGracePeriodSeconds"]
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


def test_the_kubernetes_config_is_composes_with_its_own_token() -> None:
    """base/gateway.yaml differs from config/gateway.compose.yaml only in the metrics token:
    the upstream, its models and timeouts, callers, quotas, prices and the drain grace are
    the same."""
    assert _differences(load(BASE_CONFIG), load(GATEWAY_CONFIG)) == {"metrics.token_env"}


def test_the_managed_redis_config_is_the_base_one_plus_tls(
    rendered: dict[str, Docs],
) -> None:
    """The managed-redis overlay's config differs from the base's only in store.redis,
    which trusts the CA the overlay mounts."""
    overlay = OVERLAYS["managed-redis"]
    config = load(overlay / "gateway.yaml")
    assert _differences(config, load(BASE_CONFIG)) == {"store.redis"}
    ca_file = Path(config["store"]["redis"]["tls"]["ca_file"])
    mounts = {m["name"]: m for m in gateway_container(rendered["managed-redis"])["volumeMounts"]}
    assert mounts["redis-tls"]["mountPath"] == str(ca_file.parent)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_configmap_passes_gateway_config_check(
    rendered: dict[str, Docs], overlay: str, tmp_path: Path
) -> None:
    """`gateway config check --require-env` accepts the rendered ConfigMap's config with the
    pod's environment (Secret keys at sample values)."""
    docs = rendered[overlay]
    path, _ = gateway_config(docs, tmp_path)
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    env = {**keep, **gateway_environment(docs)}
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
    assert gateway_env(docs)["GATEWAY_CONFIG"]["value"] == flag(
        gateway_container(docs)["args"], "--config"
    )


def test_every_variable_the_config_names_is_set_and_redis_is_shared(
    rendered: dict[str, Docs], tmp_path: Path
) -> None:
    """The upstream key, the user secret and the metrics token come from gateway-secrets
    (required keys), and every overlay sets the store's Redis URL: no replica runs the
    in-process store, which would give each its own quotas."""
    for docs in rendered.values():
        _, config = gateway_config(docs, tmp_path)
        env = gateway_env(docs)
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
