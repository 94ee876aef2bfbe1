"""The deploy files agree with the code and with each other: the topics are the topic table's,
every FEATUREBUS_* name is a real setting (and the values given parse as the services' settings),
every service runs with probes on the ports it listens on, URLs name services that exist, and the
versions are the ones the packages pin.
"""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices, BaseModel

from featurebus.common.settings import CommonSettings
from featurebus.common.topics import TOPICS, dlq
from featurebus.dispatcher.config import DispatcherSettings
from featurebus.indexer.config import IndexerSettings
from featurebus.inference.config import InferenceSettings
from featurebus.registry.config import RegistrySettings
from featurebus.scanner.config import ScannerSettings

from ._manifests import (
    COMPOSE,
    COMPOSE_DIR,
    ENV_EXAMPLE,
    K8S_DIR,
    ROOT,
    SERVICES,
    compose,
    compose_variables,
    env_example,
    k8s_objects,
)

SETTINGS: dict[str, type[CommonSettings]] = {
    "registry": RegistrySettings,
    "scanner": ScannerSettings,
    "dispatcher": DispatcherSettings,
    "indexer": IndexerSettings,
    "inference": InferenceSettings,
}
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
TOPIC_SCRIPT = COMPOSE_DIR / "create-topics.sh"
SECRETS_EXAMPLE = K8S_DIR / "secrets.env.example"
# Where each service's listener is configured: (host variable, port variable).
LISTENERS = {
    "registry": [
        ("FEATUREBUS_HTTP_HOST", "FEATUREBUS_HTTP_PORT"),
        ("FEATUREBUS_REGISTRY_INTERNAL_HOST", "FEATUREBUS_REGISTRY_INTERNAL_PORT"),
    ],
    "inference": [("FEATUREBUS_INFERENCE_HOST", "FEATUREBUS_INFERENCE_PORT")],
    "indexer": [("FEATUREBUS_INDEXER_HOST", "FEATUREBUS_INDEXER_PORT")],
}
# Variables that point a service at another: (variable, the service it must name, that service's port variable).
POINTERS = [
    ("FEATUREBUS_INFERENCE_URL", "inference", "FEATUREBUS_INFERENCE_PORT"),
    ("FEATUREBUS_INDEXER_URL", "indexer", "FEATUREBUS_INDEXER_PORT"),
    ("FEATUREBUS_REGISTRY_INTERNAL_URL", "registry", "FEATUREBUS_REGISTRY_INTERNAL_PORT"),
]


def env_names(cls: type[BaseModel]) -> set[str]:
    """The environment variables a settings class reads (FEATUREBUS_<FIELD> and any aliases)."""
    names = set()
    for name, spec in cls.model_fields.items():
        alias = spec.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"FEATUREBUS_{name.upper()}")
    return names


ALL_SETTINGS = set().union(*(env_names(cls) for cls in SETTINGS.values()))
# The author's command line reads a few FEATUREBUS_* variables of its own (the walkthrough's API key).
CLI_VARIABLES = set(re.findall(r'envvar="(FEATUREBUS_\w+)"', (ROOT / "libs/sdk/src/featurebus/sdk/cli.py").read_text()))


def read_env_file(path: Any) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def k8s(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for _, obj in k8s_objects() if obj["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (first, *_) = deployment["spec"]["template"]["spec"]["containers"]
    return first


def literal_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def deployment_env(deployment: dict[str, Any], secret: str = "from-the-secret") -> dict[str, str]:
    """The environment a Deployment's container gets (ConfigMaps by envFrom, literals, and a
    stand-in for each Secret key)."""
    configmaps = k8s("ConfigMap")
    c = container(deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env |= configmaps[source["configMapRef"]["name"]]["data"]
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", secret)
    return env


def settings_from(cls: type[CommonSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> CommonSettings:
    """``cls`` as the service builds it from exactly ``env``."""
    import os

    for name in [n for n in os.environ if n.startswith("FEATUREBUS_") or n == "RAY_ADDRESS"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


# -- topics ---------------------------------------------------------------------------------------

EXPECTED_TOPICS = {*TOPICS, *(dlq(t) for t in TOPICS)}


def test_every_topic_and_dlq_has_a_kafka_topic() -> None:
    topics = k8s("KafkaTopic")
    names = {t["spec"].get("topicName", name) for name, t in topics.items()}
    assert names == EXPECTED_TOPICS, f"missing: {EXPECTED_TOPICS - names}; not in TOPICS: {names - EXPECTED_TOPICS}"
    (kafka,) = k8s("Kafka")
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka, name
        if name.endswith(".dlq"):
            assert topic["spec"].get("config", {}).get("retention.ms") == -1, f"{name}: dead letters are never dropped"


def test_compose_job_creates_every_topic_and_dlq() -> None:
    text = TOPIC_SCRIPT.read_text()
    listed = re.search(r"^topics=\((?P<names>[^)]*)\)", text, re.M)
    assert listed is not None, "create-topics.sh has no topics=(...) list"
    names = listed["names"].split()
    assert names == list(TOPICS), "create-topics.sh must list featurebus.common.topics.TOPICS, in order"
    assert '--topic "${prefix}${topic}.dlq"' in text, "create-topics.sh must create each topic's DLQ"
    assert '--partitions "$partitions"' in text
    job = compose()["services"]["kafka-init"]
    assert job["entrypoint"][-1] in {v.split(":")[1] for v in job["volumes"]}, "kafka-init runs the mounted script"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_partitions_cover_the_inference_consumers() -> None:
    """README "Scale and faults": keep the partitions at least processes x FEATUREBUS_FRAME_WORKERS."""
    config = k8s("ConfigMap")["featurebus-config"]["data"]
    topics = k8s("KafkaTopic")
    partitions = {t["spec"]["partitions"] for t in topics.values()}
    assert partitions == {int(config["FEATUREBUS_TOPIC_PARTITIONS"])}, "topics.yaml and featurebus-config agree"
    inference = k8s("Deployment")["inference"]
    workers = int(literal_env(container(inference))["FEATUREBUS_FRAME_WORKERS"])
    assert topics["batch.ready"]["spec"]["partitions"] >= inference["spec"]["replicas"] * workers
    example = env_example()
    assert int(example["FEATUREBUS_TOPIC_PARTITIONS"]) >= int(example["FEATUREBUS_FRAME_WORKERS"])


def replication_problems(
    config: dict[str, str], topics: dict[str, dict[str, Any]], kafka: dict[str, Any], pools: list[dict[str, Any]]
) -> list[str]:
    """Where deploy/k8s disagrees with itself about replication: featurebus-config's settings, each
    KafkaTopic, the Kafka cluster's defaults and the brokers its node pools run."""
    problems = []
    replicas = int(config["FEATUREBUS_TOPIC_REPLICATION_FACTOR"])
    in_sync = int(config["FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    if replicas > brokers:
        problems.append(f"replication factor {replicas} > the {brokers} brokers of the node pools")
    if not 1 <= in_sync <= replicas:
        problems.append(f"min.insync.replicas {in_sync} outside 1..{replicas}")
    if replicas > 1 and in_sync == replicas:
        problems.append(f"min.insync.replicas {in_sync} = replication factor: one broker down stops every write")
    defaults = kafka["spec"]["kafka"].get("config", {})
    for key, wanted in (("default.replication.factor", replicas), ("min.insync.replicas", in_sync)):
        if int(defaults.get(key, 1)) != wanted:
            problems.append(f"Kafka spec.kafka.config {key} = {defaults.get(key)}, featurebus-config says {wanted}")
    for name, topic in topics.items():
        if topic["spec"].get("replicas") != replicas:
            problems.append(
                f"KafkaTopic {name}: replicas {topic['spec'].get('replicas')}, featurebus-config {replicas}"
            )
        got = topic["spec"].get("config", {}).get("min.insync.replicas")
        if got is None or int(got) != in_sync:
            problems.append(f"KafkaTopic {name}: min.insync.replicas {got}, featurebus-config {in_sync}")
    return problems


def _replication_inputs() -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    (kafka,) = k8s("Kafka").values()
    return k8s("ConfigMap")["featurebus-config"]["data"], k8s("KafkaTopic"), kafka, list(k8s("KafkaNodePool").values())


def test_k8s_replication_agrees_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    config, topics, kafka, pools = _replication_inputs()
    assert not replication_problems(config, topics, kafka, pools)
    assert int(config["FEATUREBUS_TOPIC_REPLICATION_FACTOR"]) > 1, "three brokers: topics are replicated"
    settings = settings_from(CommonSettings, dict(config), monkeypatch)  # the values parse (in_sync <= replicas)
    assert settings.kafka_idempotence, "the producers are idempotent on Strimzi's Kafka"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c, t, k, p: c.update(FEATUREBUS_TOPIC_REPLICATION_FACTOR="2"), "KafkaTopic"),
        (lambda c, t, k, p: c.update(FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS="3"), "one broker down"),
        (lambda c, t, k, p: t["batch.ready"]["spec"].update(replicas=1), "KafkaTopic batch.ready: replicas"),
        (lambda c, t, k, p: t["batch.ready.dlq"]["spec"]["config"].pop("min.insync.replicas"), "batch.ready.dlq"),
        (lambda c, t, k, p: k["spec"]["kafka"]["config"].update({"min.insync.replicas": 1}), "spec.kafka.config"),
        (lambda c, t, k, p: p[0]["spec"].update(replicas=1), "brokers of the node pools"),
    ],
)
def test_a_replication_mismatch_is_caught(change: Any, expected: str) -> None:
    config, topics, kafka, pools = copy.deepcopy(_replication_inputs())
    change(config, topics, kafka, pools)
    problems = replication_problems(config, topics, kafka, pools)
    assert any(expected in p for p in problems), problems


def test_compose_replication_fits_its_brokers_and_reaches_the_topic_job(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose(env_example())["services"]
    brokers = [s for s in services.values() if "broker" in str(s.get("environment", {}).get("KAFKA_PROCESS_ROLES", ""))]
    job = services["kafka-init"]["environment"]
    for name in SERVICES:
        env = services[name]["environment"]
        settings = settings_from(SETTINGS[name], {k: str(v) for k, v in env.items()}, monkeypatch)
        assert settings.topic_replication_factor <= len(brokers), f"{name}: more replicas than brokers"
        for variable in ("FEATUREBUS_TOPIC_REPLICATION_FACTOR", "FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS"):
            assert str(env[variable]) == str(job[variable]), f"{name} and kafka-init disagree on {variable}"
    text = TOPIC_SCRIPT.read_text()
    assert 'replicas="${FEATUREBUS_TOPIC_REPLICATION_FACTOR' in text
    assert 'min_insync="${FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS' in text
    assert text.count('--replication-factor "$replicas"') == 2, "topics and DLQs get the replication factor"
    assert text.count('--config min.insync.replicas="$min_insync"') == 2
    assert "--replication-factor 1" not in text


# -- settings -------------------------------------------------------------------------------------

DEPLOY_TEXT_FILES = sorted(
    [
        *(p for p in (ROOT / "deploy" / "compose").rglob("*") if p.is_file()),
        *(p for p in K8S_DIR.rglob("*") if p.is_file()),
        DOCKERFILE,
        *(p for p in (ROOT / "docker").rglob("*") if p.is_file()),
    ]
)


@pytest.mark.parametrize("path", DEPLOY_TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_featurebus_name_is_a_setting(path: Any) -> None:
    """A FEATUREBUS_* name in a deploy file (settings given, comments too) names a real setting."""
    named = set(re.findall(r"\bFEATUREBUS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    unknown = named - ALL_SETTINGS - CLI_VARIABLES
    assert not unknown, f"not a setting of any service: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_gives_each_service_its_own_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: str(v) for k, v in compose(env_example())["services"][service]["environment"].items()}
    given = {k for k in env if k.startswith("FEATUREBUS_") or k == "RAY_ADDRESS"}
    assert given <= env_names(SETTINGS[service]), f"{service} reads no {sorted(given - env_names(SETTINGS[service]))}"
    settings = settings_from(SETTINGS[service], env, monkeypatch)  # the values parse
    for host, _port in LISTENERS.get(service, []):
        field = host.removeprefix("FEATUREBUS_").lower()
        assert getattr(settings, field) == "0.0.0.0", f"{host}: other containers connect to it"
    assert settings.internal_token is not None or service in ("scanner", "dispatcher")


def test_compose_env_example_lists_exactly_what_compose_reads() -> None:
    example, used = set(env_example()), compose_variables()
    assert used <= example, f"compose.yaml reads {sorted(used - example)}, which .env.example does not list"
    assert example <= used, f".env.example lists {sorted(example - used)}, which compose.yaml does not read"


def test_filled_in_credentials_are_never_committed() -> None:
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text().split()
    assert "secrets.env" in (K8S_DIR / ".gitignore").read_text().split()


def test_compose_pointers_name_the_services_that_serve_them() -> None:
    services = compose(env_example())["services"]
    for service, spec in services.items():
        env = spec.get("environment", {})
        for variable, target, port_variable in POINTERS:
            if variable in env:
                url = urlsplit(env[variable])
                assert url.hostname == target and target in services, f"{service}: {variable}={env[variable]}"
                assert str(url.port) == str(services[target]["environment"][port_variable]), f"{service}: {variable}"
    assert services["inference"]["environment"]["RAY_ADDRESS"] == "ray-head:6379"
    assert services["indexer"]["environment"]["FEATUREBUS_QDRANT_URL"] == "http://qdrant:6333"
    assert services["registry"]["environment"]["FEATUREBUS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    for service in SERVICES:
        host, port = services[service]["environment"]["FEATUREBUS_S3_ENDPOINT"].rsplit(":", 1)
        assert (host, port) == ("minio", "9000"), f"{service}: the services reach MinIO inside the network"


def test_compose_presigned_urls_name_where_minio_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    """Users' clients cannot resolve the internal name: the registry signs for the published port."""
    services = compose(env_example())["services"]
    env = {k: str(v) for k, v in services["registry"]["environment"].items()}
    settings = settings_from(RegistrySettings, env, monkeypatch)
    public, secure = settings.public_s3()
    assert public != settings.s3_endpoint and not secure
    published = {str(p).rsplit(":", 1)[0] for p in services["minio"]["ports"]}  # 127.0.0.1:HOST_PORT
    assert public in published, f"FEATUREBUS_S3_PUBLIC_ENDPOINT={public} is not where MinIO is published ({published})"
    others = [name for name in SERVICES if name != "registry"]
    assert all("FEATUREBUS_S3_PUBLIC_ENDPOINT" not in services[name]["environment"] for name in others), (
        "only the registry hands out presigned URLs"
    )


def test_k8s_presigned_urls_name_a_public_endpoint() -> None:
    config = k8s("ConfigMap")["featurebus-config"]["data"]
    settings = CommonSettings(**{k.removeprefix("FEATUREBUS_").lower(): v for k, v in config.items()})
    public, _ = settings.public_s3()
    internal, host = settings.s3_endpoint.split(":")[0], public.split(":")[0]
    assert host != internal, "presigned URLs do not name the in-cluster endpoint"
    assert "." in host and not host.endswith((".svc", ".cluster.local")), f"{host} is not a name outside the cluster"


def test_k8s_config_holds_only_shared_settings() -> None:
    (config,) = k8s("ConfigMap").values()
    assert set(config["data"]) <= env_names(CommonSettings), "featurebus-config is read by every service"
    secrets = read_env_file(SECRETS_EXAMPLE)
    assert set(secrets) <= ALL_SETTINGS
    assert not set(secrets) & set(config["data"]), "a setting is either a credential or not"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_gives_each_service_its_own_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = k8s("Deployment")[service]
    c = container(deployment)
    names = {e["name"] for e in c.get("env", [])}
    assert names <= env_names(SETTINGS[service]), f"{service} reads no {sorted(names - env_names(SETTINGS[service]))}"
    secrets = read_env_file(SECRETS_EXAMPLE)
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "featurebus-secrets" and ref["key"] in secrets, f"{service}: {ref}"
            assert ref["key"] == e["name"], f"{service}: {e['name']} comes from the key of the same name"
    settings = settings_from(SETTINGS[service], deployment_env(deployment), monkeypatch)
    for host, _ in LISTENERS.get(service, []):
        assert getattr(settings, host.removeprefix("FEATUREBUS_").lower()) == "0.0.0.0", f"{service}: {host}"


def test_k8s_pointers_name_services_and_ports_that_exist() -> None:
    services = k8s("Service")
    deployments = k8s("Deployment")
    (kafka,) = k8s("Kafka").values()
    (ray,) = k8s("RayCluster")
    known = (
        {(name, port["port"]) for name, svc in services.items() for port in svc["spec"]["ports"]}
        | {
            (f"{kafka['metadata']['name']}-kafka-bootstrap", listener["port"])
            for listener in kafka["spec"]["kafka"]["listeners"]
        }
        | {(f"{ray}-head-svc", 6379), ("qdrant", 6333)}
    )  # KubeRay's head Service; the Qdrant chart's release
    for name, deployment in deployments.items():
        env = deployment_env(deployment)
        for variable in (
            "FEATUREBUS_INFERENCE_URL",
            "FEATUREBUS_INDEXER_URL",
            "FEATUREBUS_REGISTRY_INTERNAL_URL",
            "FEATUREBUS_QDRANT_URL",
        ):
            if variable in env:
                url = urlsplit(env[variable])
                assert (url.hostname, url.port) in known, f"{name}: {variable}={env[variable]} names no Service"
        for variable in ("FEATUREBUS_KAFKA_BOOTSTRAP", "RAY_ADDRESS"):
            if variable in env:
                host, port = env[variable].rsplit(":", 1)
                assert (host, int(port)) in known, f"{name}: {variable}={env[variable]} names no Service"
    for _variable, target, port_variable in POINTERS:
        port = int(literal_env(container(deployments[target]))[port_variable])
        assert any(p["port"] == port for p in services[target]["spec"]["ports"]), f"Service {target} has no port {port}"


# -- probes and ports -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_deployment_with_probes(service: str) -> None:
    deployments = k8s("Deployment")
    assert service in deployments, f"no Deployment for {service}"
    c = container(deployments[service])
    assert c["args"] == [service], "the image's entrypoint picks the service from its argument"
    assert "readinessProbe" in c, f"{service} has no readiness probe"
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    env = literal_env(c)
    listening = {int(env[port]) for _, port in LISTENERS.get(service, [])}
    assert listening == set(ports.values()), f"{service} listens on {listening}, declares {ports}"
    if listening:
        assert "livenessProbe" in c, f"{service} serves HTTP: it needs a liveness probe"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(kind)
        if probe is None:
            continue
        action = probe.get("httpGet") or probe.get("tcpSocket")
        if action is not None:
            assert action["port"] in ports or action["port"] in ports.values(), (
                f"{service} {kind} port {action['port']}"
            )
        else:
            command = probe["exec"]["command"]
            assert command[:2] == ["featurebus-healthcheck", "kafka"], f"{service} {kind}: {command}"
    registry_probe = deployments["registry"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert registry_probe["httpGet"]["path"] == "/healthz", "the registry's health route (main.py)"


def test_every_service_has_a_pod_disruption_budget() -> None:
    budgets = k8s("PodDisruptionBudget").values()
    for name, deployment in k8s("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert covering, f"no PodDisruptionBudget covers {name}"
        for budget in covering:
            if "minAvailable" in budget["spec"]:
                assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"], (
                    f"{name}: a drain could never proceed"
                )
    assert any(b["spec"]["selector"]["matchLabels"].get("ray.io/node-type") == "worker" for b in budgets)


def test_every_service_selector_matches_its_pods() -> None:
    deployments = k8s("Deployment")
    for name, service in k8s("Service").items():
        pods = [
            d
            for d in deployments.values()
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {name} selects no pods"
        ports = {p["name"] for d in pods for p in container(d).get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, (
            f"Service {name}: a targetPort no pod declares"
        )


def test_compose_services_have_healthchecks_and_ordered_starts() -> None:
    services = compose(env_example())["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"kafka-init", "minio-init"}
    for name, spec in services.items():
        if name not in one_shot:
            assert "healthcheck" in spec, f"{name} has no healthcheck"
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health, which it lacks"
            if condition["condition"] == "service_completed_successfully":
                assert dependency in one_shot
    for service in SERVICES:
        depends = services[service]["depends_on"]
        assert depends["kafka-init"]["condition"] == "service_completed_successfully", (
            f"{service} starts after the topics"
        )
        assert depends["minio-init"]["condition"] == "service_completed_successfully", (
            f"{service} starts after the bucket"
        )
        assert services[service]["command"] == [service]


def test_compose_publishes_only_the_api_and_s3_on_loopback() -> None:
    services = compose(env_example())["services"]
    published = {name: spec["ports"] for name, spec in services.items() if spec.get("ports")}
    assert set(published) == {"registry", "minio"}, f"published: {published}"
    assert published["registry"] == ["127.0.0.1:8000:8000"]
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports


def test_compose_named_volumes_are_declared_and_used() -> None:
    doc = compose()
    used = {
        volume.split(":")[0]
        for spec in doc["services"].values()
        for volume in spec.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used == set(doc["volumes"]), f"used {used}, declared {set(doc['volumes'])}"


# -- the image and the versions -------------------------------------------------------------------


def _pyproject(path: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / path).read_text())


def _pin(requirements: list[str], name: str) -> str:
    (found,) = [r for r in requirements if re.match(rf"{re.escape(name)}(\[[^]]*\])?==", r)]
    return found.split("==")[1]


def test_ray_cluster_runs_the_ray_the_driver_pins() -> None:
    pinned = _pin(_pyproject("services/inference/pyproject.toml")["project"]["dependencies"], "ray")
    (cluster,) = k8s("RayCluster").values()
    assert cluster["spec"]["rayVersion"] == pinned == metadata.version("ray")
    assert f"ray.__version__ == '{pinned}'" in DOCKERFILE.read_text(), "the image checks the Ray it installed"


def test_every_pod_runs_the_one_featurebus_image() -> None:
    images = set()
    for _, obj in k8s_objects():
        if obj["kind"] == "Deployment":
            images |= {c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
        if obj["kind"] == "RayCluster":
            templates = [
                obj["spec"]["headGroupSpec"]["template"],
                *(g["template"] for g in obj["spec"]["workerGroupSpecs"]),
            ]
            images |= {c["image"] for t in templates for c in t["spec"]["containers"]}
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert images == {f"{image['name']}:{image['newTag']}"}
    raw = COMPOSE.read_text()
    services = compose(env_example())["services"]
    featurebus = {name for name, spec in services.items() if "build" in spec}
    assert featurebus == {*SERVICES, "ray-head", "ray-worker"}
    assert {services[name]["image"] for name in featurebus} == {env_example()["IMAGE"]}
    assert "dockerfile: Dockerfile" in raw and "context: ../.." in raw


def test_dockerfile_installs_every_package_and_the_pinned_torch() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    packages = sorted(
        str(p.parent.relative_to(ROOT))
        for p in [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]
        if "[project]" in p.read_text()
    )
    wheel = re.search(r"pip wheel [^\n]*--wheel-dir /wheels((?:\s*\\\n[^\n\\]*)+)", text)
    assert wheel is not None
    assert sorted(wheel[1].replace("\\", " ").split()) == packages, "every package of the monorepo gets a wheel"
    for package in packages:
        dist = _pyproject(f"{package}/pyproject.toml")["project"]["name"].replace("-", "_")
        assert f"./{dist}-*.whl" in text or f"echo {dist}-*.whl" in text, f"{dist} is not installed"
    torch = _pin(_pyproject("services/inference/pyproject.toml")["project"]["dependencies"], "torch")
    vision = _pin((ROOT / "deploy/local/requirements.txt").read_text().split(), "torchvision")
    assert f"torch=={torch} torchvision=={vision}" in text
    assert "download.pytorch.org/whl/cpu" in text
    local = {
        re.split(r"[=<>~ ]", line)[0]
        for line in (ROOT / "deploy/local/requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    (excluded,) = re.findall(r"grep -vE '\^\(([^)]*)\)", text)
    assert set(excluded.split("|")) <= local, "the servers left out of the image are deploy/local's"


def test_entrypoint_runs_every_service() -> None:
    text = ENTRYPOINT.read_text()
    cases = re.search(r"^\s+registry \| [^)]*\)", text, re.M)
    assert cases is not None
    named = set(re.findall(r"[a-z]+", cases[0])) | (
        {"inference"} if re.search(r"^\s+inference\)", text, re.M) else set()
    )
    assert named == set(SERVICES)
    assert 'exec python -m "featurebus.$1"' in text and "exec python -m featurebus.inference" in text


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "allowlist: .venv, .featurebus (tokens, keys), .git stay out"
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    sources = re.findall(r"^COPY (?:--\S+ )*(\S+) ", DOCKERFILE.read_text(), re.M)
    for source in sources:
        assert any(source.rstrip("/") == i or source.startswith(i + "/") for i in included), f"COPY {source} is ignored"


def test_qdrant_versions_agree() -> None:
    values = yaml.safe_load((K8S_DIR / "values-qdrant.yaml").read_text())
    image = compose()["services"]["qdrant"]["image"]
    assert image == f"qdrant/qdrant:{values['image']['tag']}"
    server = tuple(int(x) for x in values["image"]["tag"].lstrip("v").split(".")[:2])
    client = tuple(int(x) for x in metadata.version("qdrant-client").split(".")[:2])
    assert server[0] == client[0] and abs(server[1] - client[1]) <= 1, f"qdrant-client {client} against server {server}"


def test_qdrant_values_take_the_api_key_from_the_secret() -> None:
    """values-qdrant.yaml parses and gives the chart the API key featurebus' services use."""
    values = yaml.safe_load((K8S_DIR / "values-qdrant.yaml").read_text())
    assert isinstance(values, dict) and isinstance(values.get("image"), dict)
    assert values["apiKey"]["valueFrom"]["secretKeyRef"] == {
        "name": "featurebus-secrets",
        "key": "FEATUREBUS_QDRANT_API_KEY",
    }


def test_env_examples_commit_no_secret() -> None:
    for path in (ENV_EXAMPLE, SECRETS_EXAMPLE):
        for name, value in read_env_file(path).items():
            if (
                any(word in name for word in ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "KEY"))
                and "ACCESS_KEY" not in name
            ):
                assert value in ("", "CHANGE-ME"), f"{path.name}: {name} has a value; examples carry placeholders"
