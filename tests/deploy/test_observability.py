"""The observability add-ons agree with the code and with each other (README "Observe"):
deploy/compose/compose.observability.yaml (on top of compose.yaml), the Kubernetes component
deploy/k8s/observability, and the one Grafana dashboard deploy/observability/grafana/featurebus.json.

* Compose: the overlay and the merged file against the Compose Specification; the overlay only
  adds the OTLP endpoint to the services; ports published on 127.0.0.1 only; images pinned;
  healthchecks; mounted files exist.
* Prometheus: every service is scraped, once, on the port where it really serves /metrics (the
  settings classes built from the Compose environment, or the Kubernetes Deployments, give that
  port and a host other containers reach), through headless Services on Kubernetes.
* The collector: every pipeline names only receivers, processors and exporters that are defined
  (and every one defined is used); traces go to Jaeger's OTLP port; the services' endpoint is the
  collector's receiver.
* The dashboard: every PromQL expression selects only series the code registers with
  prometheus_client (imported, not copied), with their own labels, and real route templates.
* Kubernetes: the component builds with the base, its objects pass kubernetes-validate's strict
  schemas, and its NetworkPolicies add exactly the observability flows (the evaluator of
  _network.py), nothing else.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import pkgutil
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.metrics import MetricWrapperBase

from featurebus.common import queries

from ._manifests import COMPOSE_DIR, K8S_DIR, ROOT, SERVICES, compose, env_example, interpolate, kustomize, read_yaml
from ._network import Pod, reachable
from ._promql import parse
from ._schemas import compose_errors, object_errors
from .test_crossrefs import SETTINGS, settings_from
from .test_isolation import pods as base_pods
from .test_isolation import policies as base_policies
from .test_isolation import templates
from .test_manifests import needs_kubectl

OVERLAY = COMPOSE_DIR / "compose.observability.yaml"
COMPOSE_CONFIG = COMPOSE_DIR / "observability"
COMPONENT = K8S_DIR / "observability"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "featurebus.json"
# The copies kustomize needs inside its component, with their Compose originals.
COPIES = {
    "otel-collector.yml": "otel-collector.yaml",
    "grafana-datasources.yml": "grafana/datasources.yaml",
    "grafana-dashboards.yml": "grafana/dashboards.yaml",
}
OBSERVABILITY = ("otel-collector", "jaeger", "prometheus", "grafana")
# Where each service serves /metrics: its settings' (host, port) fields (featurebus.common.metrics).
METRICS_LISTENER = {
    "registry": ("http_host", "http_port"),
    "inference": ("inference_host", "inference_port"),
    "indexer": ("indexer_host", "indexer_port"),
    "dispatcher": ("metrics_host", "metrics_port"),
    "scanner": ("metrics_host", "metrics_port"),
}
JAEGER_OTLP_GRPC = 4317  # Jaeger v2's all-in-one OTLP/gRPC receiver
# Series Prometheus makes itself for every target (not the services').
PROMETHEUS_SERIES = {"up": set()}
TARGET_LABELS = {"job", "instance"}


# -- what the code registers ----------------------------------------------------------------------


@functools.cache
def registered_series() -> dict[str, set[str]]:
    """Every series name the services expose (``_total``, ``_bucket``, ... included) with its labels,
    from the prometheus_client metrics of every module of libs/ and services/ that uses it."""
    series: dict[str, set[str]] = {}
    sources = [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    for path in sources:
        if "prometheus_client" not in path.read_text():
            continue
        src = next(p for p in path.parents if p.name == "src")
        module = importlib.import_module(".".join(path.relative_to(src).with_suffix("").parts))
        for metric in vars(module).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            name, kind, labels = metric._name, metric._type, set(metric._labelnames)
            if kind == "counter":
                series |= {f"{name}_total": labels, f"{name}_created": labels}
            elif kind == "histogram":
                series |= {f"{name}_bucket": labels | {"le"}, f"{name}_count": labels, f"{name}_sum": labels}
                series[f"{name}_created"] = labels
            elif kind == "gauge":
                series[name] = labels
            else:
                raise AssertionError(f"{name}: a {kind}; teach registered_series its exposed names")
    assert series, "no prometheus_client metric found"
    return series


@functools.cache
def route_templates() -> dict[str, set[str]]:
    """The route templates each HTTP service answers (the ``route`` label of its durations)."""
    from fastapi import FastAPI

    import featurebus.registry.routes as registry_routes

    app = FastAPI()  # flattens the routers as the registry's main.py includes them
    for info in pkgutil.iter_modules(registry_routes.__path__):
        module = importlib.import_module(f"{registry_routes.__name__}.{info.name}")
        if hasattr(module, "router"):
            app.include_router(module.router)
    registry = {"unmatched", queries.SECRETS_PATH, *app.openapi()["paths"]}
    return {
        "registry": registry,
        "inference": {queries.EMBED_PATH, queries.INFER_PATH, queries.RERANK_PATH, queries.ENRICH_PATH, "unmatched"},
        "indexer": {queries.SEARCH_PATH, "unmatched"},
    }


# -- the dashboard --------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def prometheus_targets() -> list[dict[str, Any]]:
    return [
        t
        for p in panels()
        for t in p.get("targets", [])
        if t.get("datasource", p.get("datasource", {})).get("type") == "prometheus"
    ]


def test_dashboard_names_only_series_the_code_registers() -> None:
    known = {**registered_series(), **PROMETHEUS_SERIES}
    targets = prometheus_targets()
    assert targets, "the dashboard has no Prometheus query"
    for target in targets:
        expr = parse(target["expr"])
        assert expr.selectors, f"no series in {target['expr']!r}"
        labels = set(TARGET_LABELS)
        for selector in expr.selectors:
            assert selector.name in known, f"{selector.name} is not a series of the code: {target['expr']}"
            labels |= known[selector.name]
            for label, _op, _value in selector.matchers:
                assert label in known[selector.name] | TARGET_LABELS, f"{selector.name} has no label {label!r}"
        assert expr.grouping <= labels, f"grouped by {sorted(expr.grouping - labels)}: {target['expr']}"
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert legend <= labels, f"legend names {sorted(legend - labels)}: {target['expr']}"


def test_dashboard_routes_and_services_are_real() -> None:
    """A ``route`` matcher names a template the service answers (ids in paths are never labels)."""
    routes = route_templates()
    checked = 0
    for target in prometheus_targets():
        for selector in parse(target["expr"]).selectors:
            matchers = {label: (op, value) for label, op, value in selector.matchers}
            if "service" in matchers:
                assert matchers["service"] == ("=", matchers["service"][1]) and matchers["service"][1] in SERVICES
            if "route" in matchers:
                op, route = matchers["route"]
                assert op == "=" and "service" in matchers, f"{target['expr']}: one route of one service"
                assert route in routes[matchers["service"][1]], f"{matchers['service'][1]} answers no {route}"
                checked += 1
    assert checked, "the query path's panels select routes"


def test_dashboard_shows_every_series_the_code_defines() -> None:
    """A series added to the code without a panel fails here: add one (or say why not)."""
    used = {s.name for t in prometheus_targets() for s in parse(t["expr"]).selectors}
    defined = {
        name.rsplit("_bucket", 1)[0]
        for name in registered_series()
        if not name.endswith(("_created", "_sum", "_count"))
    }
    shown = {name.rsplit("_bucket", 1)[0] if name.endswith("_bucket") else name for name in used}
    assert defined <= shown, f"not on the dashboard: {sorted(defined - shown)}"


def test_dashboard_uses_the_provisioned_data_sources() -> None:
    (provisioning,) = read_yaml(COMPOSE_CONFIG / "grafana" / "datasources.yaml")
    uids = {(d["type"], d["uid"]) for d in provisioning["datasources"]}
    used = {
        (ds["type"], ds["uid"])
        for p in panels()
        for ds in [p.get("datasource"), *(t.get("datasource") for t in p.get("targets", []))]
        if ds
    }
    assert used and used <= uids, f"data sources not provisioned: {used - uids}"
    assert {"prometheus", "jaeger"} == {t for t, _ in used}, "the metrics and the traces"
    assert dashboard()["uid"] and dashboard()["editable"] is False


def test_parser_reads_what_the_dashboard_writes() -> None:
    expr = parse(
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{service="registry",route="/v1/{ns}/x"}[$__rate_interval])))'
    )
    assert [s.name for s in expr.selectors] == ["x_bucket"]
    assert expr.selectors[0].matchers == (("service", "=", "registry"), ("route", "=", "/v1/{ns}/x"))
    assert expr.grouping == {"le"}
    assert [s.name for s in parse("max by (topic, group) (a) / on (topic) b offset 5m").selectors] == ["a", "b"]


# -- Compose --------------------------------------------------------------------------------------


def overlay(env: dict[str, str] | None = None) -> dict[str, Any]:
    (doc,) = read_yaml(OVERLAY)
    return doc if env is None else interpolate(doc, env)


def merged() -> dict[str, Any]:
    """compose.yaml with compose.observability.yaml on top, as ``docker compose -f -f`` merges the
    keys the overlay uses (a service's environment mapping key by key; new services and volumes)."""
    env = env_example()
    base, extra = compose(env), overlay(env)
    result = copy.deepcopy(base)
    for name, spec in extra["services"].items():
        if name in base["services"]:
            result["services"][name]["environment"] = {**base["services"][name]["environment"], **spec["environment"]}
        else:
            result["services"][name] = spec
    result["volumes"] = {**base.get("volumes", {}), **extra.get("volumes", {})}
    return result


def test_overlay_matches_the_compose_specification() -> None:
    errors = compose_errors(overlay()) + compose_errors(merged())
    assert not errors, "compose.observability.yaml:\n" + "\n".join(errors)


def test_overlay_only_points_the_services_at_the_collector() -> None:
    extra = overlay(env_example())["services"]
    base = compose(env_example())["services"]
    (collector,) = [c for c in collector_configs() if c[0] == "compose"]
    receiver = urlsplit("//" + collector[1]["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    for name in set(extra) & set(base):
        assert name in SERVICES, f"the overlay changes {name}"
        assert set(extra[name]) == {"environment"}, f"{name}: the overlay adds environment only"
        (endpoint,) = extra[name]["environment"].values()
        assert set(extra[name]["environment"]) == {"OTEL_EXPORTER_OTLP_ENDPOINT"}
        url = urlsplit(endpoint)
        assert (url.scheme, url.hostname, url.port) == ("http", "otel-collector", receiver.port), endpoint
    assert set(SERVICES) <= set(extra), "every service sends its traces"
    assert set(extra) - set(base) == set(OBSERVABILITY)


def test_overlay_publishes_only_on_loopback_and_pins_its_images() -> None:
    services = merged()["services"]
    published = {name: spec["ports"] for name, spec in services.items() if spec.get("ports")}
    assert set(published) == {"registry", "minio", "grafana", "jaeger", "prometheus"}, published
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports
    for name in OBSERVABILITY:
        spec = services[name]
        image, _, tag = spec["image"].rpartition(":")
        assert image and tag and tag != "latest", f"{name}: pin {spec['image']}"
        assert spec["cap_drop"] == ["ALL"] and "no-new-privileges:true" in spec["security_opt"]
        assert spec.get("read_only") is True, f"{name} writes only its volumes"


def test_overlay_healthchecks_volumes_and_mounts() -> None:
    doc = merged()
    services = doc["services"]
    for name in OBSERVABILITY:
        # The collector's image is FROM scratch: nothing in it could run a check.
        assert ("healthcheck" in services[name]) == (name != "otel-collector"), name
        for dependency, condition in services[name].get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"
    used = {
        v.split(":")[0] for spec in services.values() for v in spec.get("volumes", []) if not v.startswith((".", "/"))
    }
    assert used == set(doc["volumes"]), f"used {used}, declared {set(doc['volumes'])}"
    for name in OBSERVABILITY:
        for volume in services[name].get("volumes", []):
            if volume.startswith("."):
                source = (COMPOSE_DIR / volume.split(":")[0]).resolve()
                assert source.is_file(), f"{name} mounts {source}, which is missing"
    grafana = [v.split(":") for v in services["grafana"]["volumes"]]
    assert [s for s, *_ in grafana if (COMPOSE_DIR / s).resolve() == DASHBOARD], "Grafana mounts the dashboard"


def test_compose_prometheus_scrapes_every_service_where_it_serves_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    (config,) = read_yaml(COMPOSE_CONFIG / "prometheus.yml")
    services = merged()["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES), f"jobs {sorted(jobs)}"
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        ((target,),) = [c["targets"] for c in job["static_configs"]]
        host, port = target.rsplit(":", 1)
        assert host == name and host in services, f"{name}: target {target}"
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = settings_from(SETTINGS[name], env, monkeypatch)
        host_field, port_field = METRICS_LISTENER[name]
        assert getattr(settings, port_field) == int(port), f"{name} serves /metrics on {getattr(settings, port_field)}"
        assert getattr(settings, host_field) == "0.0.0.0", f"{name}: Prometheus is another container"
        if port_field != "metrics_port":
            assert settings.metrics_port is None, f"{name} already serves /metrics on {port_field}: no second server"


# -- the collector and Grafana's provisioning -----------------------------------------------------


def collector_configs() -> list[tuple[str, dict[str, Any]]]:
    (compose_config,) = read_yaml(COMPOSE_CONFIG / "otel-collector.yaml")
    (k8s_config,) = read_yaml(COMPONENT / "otel-collector.yml")
    return [("compose", compose_config), ("k8s", k8s_config)]


@pytest.mark.parametrize(("where", "config"), collector_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_collector_pipelines_name_only_defined_components(where: str, config: dict[str, Any]) -> None:
    service = config["service"]
    assert set(service.get("extensions", [])) == set(config.get("extensions", {})), f"{where}: extensions"
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert service["pipelines"], f"{where}: no pipeline"
    for name, pipeline in service["pipelines"].items():
        assert name.split("/")[0] in ("traces", "metrics", "logs"), name
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"{where}: {name} needs both ends"
        for kind, names in used.items():
            for component in pipeline.get(kind, []):
                assert component in config.get(kind, {}), f"{where}: pipeline {name} names undefined {kind} {component}"
                names.add(component)
    for kind, names in used.items():
        assert set(config.get(kind, {})) == names, f"{where}: {kind} defined but in no pipeline"
    for name, exporter in config["exporters"].items():
        if name.split("/")[0] == "otlp":
            host, port = exporter["endpoint"].rsplit(":", 1)
            assert (host, int(port)) == ("jaeger", JAEGER_OTLP_GRPC), f"{where}: {name} -> {exporter['endpoint']}"


def test_kustomize_copies_equal_the_compose_files() -> None:
    for copy_name, original in COPIES.items():
        assert read_yaml(COMPONENT / copy_name) == read_yaml(COMPOSE_CONFIG / original), f"{copy_name} != {original}"


def test_grafana_provisioning_points_at_the_servers() -> None:
    services = merged()["services"]
    (datasources,) = read_yaml(COMPOSE_CONFIG / "grafana" / "datasources.yaml")
    for source in datasources["datasources"]:
        url = urlsplit(source["url"])
        assert url.hostname == source["type"] and url.hostname in services, source
        container_ports = {str(p).rsplit(":", 1)[-1] for p in services[url.hostname].get("ports", [])}
        assert str(url.port) in container_ports, f"{source['name']}: {url.hostname} serves no {url.port}"
    (providers,) = read_yaml(COMPOSE_CONFIG / "grafana" / "dashboards.yaml")
    (provider,) = providers["providers"]
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert f"{provider['options']['path']}/{DASHBOARD.name}" in mounted
    assert provider["allowUiUpdates"] is False


# -- Kubernetes -----------------------------------------------------------------------------------


@functools.cache
def built() -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(_overlay_dir()))


@functools.cache
def _overlay_dir() -> Path:
    import atexit
    import shutil
    import tempfile

    overlay_dir = Path(tempfile.mkdtemp(prefix="featurebus-observability-"))
    atexit.register(shutil.rmtree, overlay_dir, ignore_errors=True)
    rel = [os.path.relpath(p, overlay_dir) for p in (K8S_DIR, COMPONENT)]
    overlay_dir.joinpath("kustomization.yaml").write_text(f"resources: [{rel[0]}]\ncomponents: [{rel[1]}]\n")
    return overlay_dir


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in built() if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    configmaps = objects("ConfigMap")
    c = container(deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env |= configmaps[source["configMapRef"]["name"]]["data"]
    return env | {e["name"]: e.get("value", "from-the-secret") for e in c.get("env", [])}


@needs_kubectl
def test_component_builds_and_validates() -> None:
    problems = []
    for obj in built():
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        problems += [f"{name}: {e}" for e in object_errors(obj)]
        if obj["kind"] not in ("Namespace",):
            assert obj["metadata"].get("namespace") == "featurebus", name
    assert not problems, "\n".join(problems)
    deployments = objects("Deployment")
    assert set(OBSERVABILITY) <= set(deployments)
    configmaps = objects("ConfigMap")
    for name, deployment in deployments.items():
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, f"{name} mounts a ConfigMap that is not built"
    compose_images = {name: overlay()["services"][name]["image"] for name in OBSERVABILITY}
    assert {name: container(deployments[name])["image"] for name in OBSERVABILITY} == compose_images


@needs_kubectl
def test_k8s_configuration_is_the_repository_files() -> None:
    configmaps = {name.rsplit("-", 1)[0]: cm for name, cm in objects("ConfigMap").items()}
    assert json.loads(configmaps["grafana-dashboards"]["data"][DASHBOARD.name]) == dashboard()
    assert (
        configmaps["otel-collector-config"]["data"]["otel-collector.yml"]
        == (COMPONENT / "otel-collector.yml").read_text()
    )
    assert configmaps["prometheus-config"]["data"]["prometheus.yml"] == (COMPONENT / "prometheus.yml").read_text()


@needs_kubectl
def test_k8s_prometheus_scrapes_every_pod_where_it_serves_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    (config,) = read_yaml(COMPONENT / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    services, deployments = objects("Service"), objects("Deployment")
    for name, job in jobs.items():
        ((sd,),) = [job["dns_sd_configs"]]
        (dns_name,) = sd["names"]
        assert sd["type"] == "A"
        headless = services[dns_name]
        assert headless["spec"].get("clusterIP") == "None", f"{dns_name}: one address per pod"
        selected = [
            d
            for d, dep in deployments.items()
            if headless["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [name], f"{dns_name} selects {selected}"
        c = container(deployments[name])
        declared = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        (port,) = headless["spec"]["ports"]
        assert port["port"] == sd["port"] == declared[port["targetPort"]], f"{name}: {port} vs {sd['port']}"
        settings = settings_from(SETTINGS[name], env_of(deployments[name]), monkeypatch)
        host_field, port_field = METRICS_LISTENER[name]
        assert getattr(settings, port_field) == sd["port"], f"{name} serves /metrics on {getattr(settings, port_field)}"
        assert getattr(settings, host_field) == "0.0.0.0", name
        if port_field != "metrics_port":
            assert settings.metrics_port is None, f"{name}: no second /metrics server"


@needs_kubectl
def test_k8s_endpoints_name_services_and_ports_that_exist() -> None:
    services, deployments = objects("Service"), objects("Deployment")

    def serves(host: str, port: int) -> None:
        assert host in services, f"no Service {host}"
        (match,) = [p for p in services[host]["spec"]["ports"] if p["port"] == port]
        (pod,) = [
            d
            for d in deployments.values()
            if services[host]["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        declared = {p["name"]: p["containerPort"] for p in container(pod).get("ports", [])}
        assert declared.get(match["targetPort"]) == port, f"{host}:{port} reaches no container port"

    (collector,) = read_yaml(COMPONENT / "otel-collector.yml")
    receiver = int(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])
    for name in SERVICES:
        url = urlsplit(env_of(deployments[name])["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (url.hostname, url.port) == ("otel-collector", receiver), name
        serves(url.hostname, url.port)
    for exporter in collector["exporters"].values():
        host, port = exporter["endpoint"].rsplit(":", 1)
        serves(host, int(port))
    (datasources,) = read_yaml(COMPONENT / "grafana-datasources.yml")
    for source in datasources["datasources"]:
        url = urlsplit(source["url"])
        serves(str(url.hostname), int(url.port or 80))


def _component_objects() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(COMPONENT.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in read_yaml(path)
    ]


@pytest.mark.parametrize("name", OBSERVABILITY)
def test_observability_pods_are_locked_down(name: str) -> None:
    (deployment,) = [o for o in _component_objects() if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    spec = deployment["spec"]["template"]["spec"]
    assert spec.get("automountServiceAccountToken") is False and spec.get("enableServiceLinks") is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "readinessProbe" in c and "livenessProbe" in c, f"{name}: probes"
        assert c["resources"]["limits"]["memory"], f"{name}: a memory limit"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "featurebus", "under featurebus-default-deny and featurebus-dns"


# -- Kubernetes: network --------------------------------------------------------------------------

METRICS_PORTS = {
    "registry": "TCP/8000",
    "inference": "TCP/8010",
    "indexer": "TCP/8020",
    "dispatcher": "TCP/8040",
    "scanner": "TCP/8050",
}
DNS = {"kube-dns": {"UDP/53", "TCP/53"}}
# What observability adds, and only this: {source: {target: ports}}.
ADDED = {
    **{service: {"otel-collector": {"TCP/4318"}} for service in SERVICES},
    "otel-collector": {"jaeger": {"TCP/4317"}, **DNS},
    "prometheus": {**{service: {port} for service, port in METRICS_PORTS.items()}, **DNS},
    "grafana": {"prometheus": {"TCP/9090"}, "jaeger": {"TCP/16686"}, **DNS},
    "jaeger": DNS,
}


def _pods_with_observability() -> list[Pod]:
    new = [
        Pod(o["metadata"]["name"], o["spec"]["template"]["metadata"]["labels"])
        for o in _component_objects()
        if o["kind"] == "Deployment"
    ]
    return [*base_pods(), *new]


def test_component_network_policies_add_only_the_observability_flows() -> None:
    everyone = _pods_with_observability()
    before = base_policies()
    after = base_policies(COMPONENT / "network-policies.yaml")
    assert len(after) > len(before)
    for source in everyone:
        got = {k: set(v) for k, v in reachable(source, everyone, after).items()}
        old = {k: set(v) for k, v in reachable(source, everyone, before).items() if k not in OBSERVABILITY}
        want = copy.deepcopy(old)
        for target, ports in ADDED.get(source.name, {}).items():
            want[target] = want.get(target, set()) | ports
        assert got == want, f"{source.name}: reaches {got}, should reach {want}"


def test_metrics_and_api_ports_stay_closed_to_strangers() -> None:
    """Only Prometheus gets the new scrape rules: the internal APIs still admit only their callers."""
    everyone = _pods_with_observability()
    policies = base_policies(COMPONENT / "network-policies.yaml")
    stranger = next(p for p in everyone if p.name == "someone-else")
    ours = {p.name for p in _pods_with_observability() if p.labels.get("app.kubernetes.io/part-of") == "featurebus"}
    ours |= {name for name, t in templates().items()}
    got = {k: v for k, v in reachable(stranger, everyone, policies).items() if k in ours}
    assert got == {"registry": frozenset({"TCP/8000"})}, "the REST API only, as without observability"
    for name in OBSERVABILITY:
        pod = next(p for p in everyone if p.name == name)
        callers = {s.name for s in everyone if s.name != name and name in reachable(s, everyone, policies)}
        expected = {
            "otel-collector": set(SERVICES),
            "jaeger": {"otel-collector", "grafana"},
            "prometheus": {"grafana"},
            "grafana": set(),
        }[name]
        assert callers == expected, f"{pod.name} is reached by {callers}"
