"""deploy/compose and deploy/k8s are valid: every YAML parses, compose.yaml against the Compose
Specification (as check-jsonschema vendors it), every object of Kubernetes' own kinds against its
kind's strict schema (kubernetes-validate's, its newest Kubernetes), and ``kubectl kustomize``
builds the base and its components (no cluster needed). The schemas come from those installed
packages (tests/deploy/_schemas.py); this repository keeps none.

The CRD schemas (Strimzi's Kafka, KafkaNodePool and KafkaTopic, KubeRay's RayCluster) are not
validated: no package ships them. Their objects get structural checks of the fields featurebus
relies on instead (apiVersion/kind, metadata against Kubernetes' ObjectMeta, KafkaTopic
partitions/replicas/config, the Kafka cluster's listeners and its KRaft node pools, the RayCluster's
head and worker groups with their pod templates, images, resources and rayVersion). To validate
them against their CRDs, run kubeconform with the datreeio CRDs catalog where there is network.
Cross-references between them and the code are in test_crossrefs.py, isolation in test_isolation.py.
"""

from __future__ import annotations

import copy as copy_module
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._manifests import (
    COMPOSE,
    K8S_DIR,
    ROOT,
    compose,
    env_example,
    k8s_objects,
    kubectl,
    kustomize,
    read_yaml,
)
from ._schemas import CRD_KINDS, KUBERNETES_KINDS, compose_errors, object_errors

YAML_FILES = sorted([*(ROOT / "deploy" / "compose").rglob("*.yaml"), *K8S_DIR.rglob("*.yaml")])
COMPONENTS = sorted(p.parent for p in (K8S_DIR / "components").glob("*/kustomization.yaml"))
# Kinds that have no namespace (the rest must land in featurebus).
CLUSTER_SCOPED = {"Namespace", "RuntimeClass"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert read_yaml(path), f"{path} holds no YAML document"


def test_compose_matches_the_compose_specification() -> None:
    errors = compose_errors(compose())
    assert not errors, "compose.yaml:\n" + "\n".join(errors)


def test_compose_merges_never_depend_on_precedence() -> None:
    """YAML parsers disagree on which of several merged mappings wins a key (PyYAML 6.0.4 takes the
    last, the spec and Compose's go-yaml the first): merged mappings must not share keys."""

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge" and isinstance(value, yaml.SequenceNode):
                    seen: set[str] = set()
                    for mapping in value.value:
                        keys = {k.value for k, _ in mapping.value}
                        assert not keys & seen, f"line {key.start_mark.line + 1}: {sorted(keys & seen)} merged twice"
                        seen |= keys
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    walk(yaml.compose(COMPOSE.read_text()))


def test_compose_interpolates_with_the_example_env() -> None:
    """Every ${...} resolves with .env.example's values, and the result is still valid."""
    resolved = compose(env_example())
    errors = compose_errors(resolved)
    assert not errors, "compose.yaml with .env.example:\n" + "\n".join(errors)


def test_compose_refuses_to_start_without_the_secrets() -> None:
    """A missing credential stops `docker compose` with a message naming it (${VAR:?...})."""
    env = {k: v for k, v in env_example().items() if k != "FEATUREBUS_INTERNAL_TOKEN"}
    with pytest.raises(KeyError, match="FEATUREBUS_INTERNAL_TOKEN"):
        compose(env)


def _k8s_cases() -> list[Any]:
    return [
        pytest.param(obj, id=f"{path.relative_to(K8S_DIR)}:{obj.get('kind')}/{obj.get('metadata', {}).get('name')}")
        for path, obj in k8s_objects(components=True)
    ]


@pytest.mark.parametrize("obj", _k8s_cases())
def test_kubernetes_object_matches_its_schema(obj: dict[str, Any]) -> None:
    """Kubernetes' own kinds against their schema, the CRDs' objects by their structural checks."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    assert key in KUBERNETES_KINDS or key in CRD_KINDS, f"no schema or check for {key}: add it to _schemas.py"
    errors = object_errors(obj)
    assert not errors, f"{key[1]} {obj['metadata'].get('name')}:\n" + "\n".join(errors)


@pytest.mark.parametrize("obj", _k8s_cases())
def test_kubernetes_names_are_valid(obj: dict[str, Any]) -> None:
    """What the API server would refuse although the schemas allow it: names that are not DNS names."""
    name = obj["metadata"]["name"]
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), f"{name!r} is not a DNS subdomain"
    if obj["kind"] in ("Service", "Deployment", "RayCluster"):
        assert len(name) <= 63 and DNS_LABEL.match(name), f"{obj['kind']} {name!r} is not a DNS-1035 label"


def test_every_manifest_is_in_the_kustomization() -> None:
    listed = {
        p["path"] if isinstance(p, dict) else p
        for p in yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"]
    }
    files = {
        p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml" and not p.name.startswith("values-")
    }
    assert files == listed, (
        f"in deploy/k8s but not in kustomization.yaml: {files - listed}; listed but missing: {listed - files}"
    )


needs_kubectl = pytest.mark.skipif(
    kubectl() is None, reason="kubectl is not installed (kubectl kustomize builds locally)"
)


def _overlay(tmp_path: Path, components: list[Path]) -> Path:
    """An overlay of the base (and ``components``), as an operator would write it."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = [os.path.relpath(p, overlay) for p in (K8S_DIR, *components)]
    overlay.joinpath("kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [rel[0]],
                "components": rel[1:],
                "images": [{"name": "featurebus", "newName": "registry.example.com/featurebus", "newTag": "9.9.9"}],
            }
        )
    )
    return overlay


def _check_built(objects: list[dict[str, Any]]) -> None:
    problems = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        problems += [f"{name}: {e}" for e in object_errors(obj)]
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, f"{name} is cluster-scoped but got namespace {namespace}"
        else:
            assert namespace == "featurebus", f"{name} is in namespace {namespace!r}"
    assert not problems, "\n".join(problems)


@needs_kubectl
def test_kustomize_builds_the_base() -> None:
    objects = kustomize(K8S_DIR)
    _check_built(objects)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "RayCluster", "Kafka"} <= kinds
    assert "RuntimeClass" not in kinds, "gVisor is optional: components/gvisor adds it"


@needs_kubectl
@pytest.mark.parametrize("component", COMPONENTS, ids=lambda p: p.name)
def test_kustomize_builds_with_each_component(tmp_path: Path, component: Path) -> None:
    objects = kustomize(_overlay(tmp_path, [component]))
    _check_built(objects)
    images = {c["image"] for o in objects for t in _templates(o) for c in t["spec"]["containers"]}
    assert images == {"registry.example.com/featurebus:9.9.9"}, f"an overlay's image reaches every pod: {images}"


@needs_kubectl
def test_gvisor_component_runs_the_ray_workers_under_its_runtime_class(tmp_path: Path) -> None:
    objects = kustomize(_overlay(tmp_path, [K8S_DIR / "components" / "gvisor"]))
    (runtime,) = [o for o in objects if o["kind"] == "RuntimeClass"]
    (cluster,) = [o for o in objects if o["kind"] == "RayCluster"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["template"]["spec"].get("runtimeClassName") == runtime["metadata"]["name"]
    assert "runtimeClassName" not in cluster["spec"]["headGroupSpec"]["template"]["spec"]


def _templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]]
    if obj["kind"] == "RayCluster":
        return [obj["spec"]["headGroupSpec"]["template"], *(g["template"] for g in obj["spec"]["workerGroupSpecs"])]
    return []


def test_kafka_runs_on_kraft_node_pools() -> None:
    """The Kafka cluster is KRaft on node pools: every pool and topic names it, and its pools hold
    both controllers and brokers (kafka.strimzi.io/v1 has no ZooKeeper and no spec.kafka.replicas)."""
    objects = [obj for _, obj in k8s_objects()]
    (kafka,) = [o for o in objects if o["kind"] == "Kafka"]
    cluster = kafka["metadata"]["name"]
    pools = [o for o in objects if o["kind"] == "KafkaNodePool"]
    assert pools, "no KafkaNodePool: a kafka.strimzi.io/v1 cluster needs node pools"
    for obj in (*pools, *(o for o in objects if o["kind"] == "KafkaTopic")):
        label = obj["metadata"].get("labels", {}).get("strimzi.io/cluster")
        assert label == cluster, f"{obj['kind']} {obj['metadata']['name']} names cluster {label!r}"
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}, f"the node pools' roles: {roles}"
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert controllers % 2 == 1, f"{controllers} KRaft controllers: a quorum wants an odd number"
    assert "zookeeper" not in kafka["spec"]


def _mutated(kind: str, change: Any) -> dict[str, Any]:
    obj = next(o for _, o in k8s_objects() if o["kind"] == kind)
    copy = copy_module.deepcopy(obj)
    change(copy)
    return copy


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("KafkaTopic", lambda o: o["spec"].update(partitions=0), "spec/partitions"),
        ("KafkaTopic", lambda o: o["spec"].update(replicas="3"), "spec/replicas"),
        ("KafkaTopic", lambda o: o["spec"].update(config={"retention.ms": [1]}), "spec/config/retention.ms"),
        ("KafkaTopic", lambda o: o["metadata"]["labels"].clear(), "metadata/labels"),
        ("KafkaTopic", lambda o: o["metadata"].update(nme="x"), "metadata/"),
        ("KafkaNodePool", lambda o: o["spec"].update(roles=["leader"]), "spec/roles"),
        ("KafkaNodePool", lambda o: o["spec"]["resources"].update(limit={}), "spec/resources/"),
        ("Kafka", lambda o: o["spec"]["kafka"].update(replicas=3), "spec/kafka/replicas"),
        ("Kafka", lambda o: o["spec"]["kafka"]["listeners"][0].pop("tls"), "spec/kafka/listeners/0/tls"),
        ("Kafka", lambda o: o["spec"]["kafka"]["listeners"][0].update(type="internl"), "listeners/0/type"),
        ("RayCluster", lambda o: o["spec"].pop("rayVersion"), "spec/rayVersion"),
        ("RayCluster", lambda o: o["spec"]["headGroupSpec"].pop("template"), "spec/headGroupSpec/template"),
        (
            "RayCluster",
            lambda o: o["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("image"),
            "containers/0/image",
        ),
        (
            "RayCluster",
            lambda o: o["spec"]["workerGroupSpecs"][0]["template"]["spec"].update(runtimeClass="gvisor"),
            "spec/workerGroupSpecs/0/template/",
        ),
        ("RayCluster", lambda o: o["spec"]["workerGroupSpecs"][0].update(minReplicas=3), "spec/workerGroupSpecs/0"),
    ],
)
def test_crd_checks_catch_mistakes(kind: str, change: Any, expected: str) -> None:
    """The structural checks that stand in for the CRD schemas do refuse what they should."""
    errors = object_errors(_mutated(kind, change))
    assert any(expected in e for e in errors), f"{kind}: no error at {expected!r} in {errors}"


def test_kubernetes_schemas_are_strict() -> None:
    deployment = next(o for _, o in k8s_objects() if o["kind"] == "Deployment")
    broken = copy_module.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in e for e in object_errors(broken))
