"""What the deploy tests validate deploy/compose and deploy/k8s against, all from installed packages
(``make setup`` installs them; nothing is downloaded and no schema is kept in this repository):

* the Compose Specification's JSON schema as check-jsonschema vendors it
  (its package ``check_jsonschema.builtin_schemas.vendor``, file ``compose-spec.json``);
* Kubernetes' own kinds against kubernetes-validate's strict schemas (unknown fields are errors)
  of the newest Kubernetes version it ships;
* the CRDs featurebus uses (Strimzi's Kafka, KafkaNodePool, KafkaTopic ``kafka.strimzi.io/v1`` and
  KubeRay's RayCluster ``ray.io/v1``): no package ships their schemas, so their CRD schemas are not
  validated here (run kubeconform with the datreeio CRDs catalog for that, where there is network).
  Instead :func:`crd_errors` checks the fields featurebus relies on, and the Kubernetes types
  embedded in them (ObjectMeta, the RayCluster's PodTemplateSpecs, ResourceRequirements,
  NetworkPolicyPeers) against kubernetes-validate's definitions.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

import kubernetes_validate
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from kubernetes_validate.utils import latest_version
from referencing import Registry, Resource

__all__ = [
    "CRD_KINDS",
    "KUBERNETES_KINDS",
    "KUBERNETES_VERSION",
    "compose_errors",
    "crd_errors",
    "kubernetes_errors",
    "object_errors",
]

# The newest Kubernetes whose schemas kubernetes-validate ships (e.g. "1.37.0").
KUBERNETES_VERSION = latest_version()
_SCHEMA_DIR = f"v{KUBERNETES_VERSION}-local-strict"
_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"

# (apiVersion, kind) -> kubernetes-validate's schema file, for Kubernetes' own kinds.
KUBERNETES_KINDS = {
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicy-networking-v1.json",
    ("node.k8s.io/v1", "RuntimeClass"): "runtimeclass-node-v1.json",
}
# The CRD kinds, checked structurally (no schema available from a package).
CRD_KINDS = {
    ("ray.io/v1", "RayCluster"),
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
}


def _format(errors: Any, prefix: str = "") -> list[str]:
    return [
        f"{prefix}{'/'.join(str(p) for p in e.absolute_path) or ('<root>' if not prefix else '')}: {e.message[:300]}"
        for e in errors
    ]


# -- Compose --------------------------------------------------------------------------------------


@functools.cache
def _compose_validator() -> Any:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def compose_errors(doc: Any) -> list[str]:
    """What a Compose file gets wrong against the Compose Specification: one line per error."""
    return _format(_compose_validator().iter_errors(doc))


# -- Kubernetes' own kinds ------------------------------------------------------------------------


def _k8s_file(name: str) -> Any:
    ref = resources.files(kubernetes_validate).joinpath("kubernetes-json-schema", _SCHEMA_DIR, name)
    return json.loads(ref.read_text())


@functools.cache
def _registry() -> Registry:
    return Resource.from_contents(_k8s_file("_definitions.json")) @ Registry()


@functools.cache
def _validator(name: str) -> Any:
    """A validator for kubernetes-validate's schema file ``name`` (as its ``validate`` builds one,
    but reporting every error, not the first)."""
    schema = _k8s_file(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


@functools.cache
def _definition(name: str) -> Any:
    """A validator for one type of Kubernetes' API, e.g. ``io.k8s.api.core.v1.PodTemplateSpec``."""
    return Draft202012Validator({"$ref": f"{_DEFINITIONS}#/$defs/{name}"}, registry=_registry())


def kubernetes_errors(obj: dict[str, Any]) -> list[str]:
    """What an object of one of Kubernetes' own kinds gets wrong against its strict schema."""
    return _format(_validator(KUBERNETES_KINDS[(obj["apiVersion"], obj["kind"])]).iter_errors(obj))


def _embedded(instance: Any, definition: str, where: str) -> list[str]:
    return _format(_definition(definition).iter_errors(instance), f"{where}/")


# -- the CRDs, structurally -----------------------------------------------------------------------

_CORE = "io.k8s.api.core.v1."
_STRIMZI_LISTENER_NAME = re.compile(r"^[a-z0-9]{1,11}$")
_STRIMZI_LISTENER_TYPES = {"internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"}


class _Check:
    """Collects the problems of one object, addressed by their path."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def typed(
        self, node: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, *, required: bool
    ) -> Any:
        """``node[key]`` if it has type ``kind`` (bools are not ints); records a problem otherwise."""
        if key not in node:
            if required:
                self.fail(f"{where}/{key}", "is required")
            return None
        value = node[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.fail(f"{where}/{key}", f"{value!r} is not of type {'/'.join(k.__name__ for k in kinds)}")
            return None
        return value

    def only(self, node: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(node) - allowed):
            self.fail(f"{where}/{key}", "is not a field featurebus expects here")

    def count(self, node: dict[str, Any], key: str, where: str, *, required: bool, minimum: int = 0) -> int | None:
        value = self.typed(node, key, int, where, required=required)
        if value is not None and value < minimum:
            self.fail(f"{where}/{key}", f"{value} is less than {minimum}")
        return value

    def string_map(self, node: dict[str, Any], key: str, where: str, *, required: bool) -> None:
        value = self.typed(node, key, dict, where, required=required)
        for k, v in (value or {}).items():
            if not isinstance(v, str):
                self.fail(f"{where}/{key}/{k}", f"{v!r} is not a string")


def _cluster_label(check: _Check, obj: dict[str, Any]) -> None:
    labels = obj.get("metadata", {}).get("labels") or {}
    if not isinstance(labels.get("strimzi.io/cluster"), str):
        check.fail("metadata/labels", "has no strimzi.io/cluster label naming its Kafka cluster")


def _kafka_topic(check: _Check, obj: dict[str, Any]) -> None:
    _cluster_label(check, obj)
    spec = check.typed(obj, "spec", dict, "", required=True) or {}
    check.only(spec, {"topicName", "partitions", "replicas", "config"}, "spec")
    check.typed(spec, "topicName", str, "spec", required=False)
    check.count(spec, "partitions", "spec", required=True, minimum=1)
    replicas = check.count(spec, "replicas", "spec", required=True, minimum=1)
    if replicas is not None and replicas > 32767:
        check.fail("spec/replicas", f"{replicas} is more than 32767")
    config = check.typed(spec, "config", dict, "spec", required=False)
    for key, value in (config or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            check.fail(f"spec/config/{key}", f"{value!r} is not a scalar")


def _kafka_node_pool(check: _Check, obj: dict[str, Any]) -> None:
    _cluster_label(check, obj)
    spec = check.typed(obj, "spec", dict, "", required=True) or {}
    check.only(spec, {"replicas", "roles", "storage", "resources", "jvmOptions", "template"}, "spec")
    check.count(spec, "replicas", "spec", required=True)
    roles = check.typed(spec, "roles", list, "spec", required=True) or []
    if not roles or not set(roles) <= {"controller", "broker"}:
        check.fail("spec/roles", f"{roles!r} is not a non-empty list of controller/broker")
    storage = check.typed(spec, "storage", dict, "spec", required=True) or {}
    kind = storage.get("type")
    if kind not in ("jbod", "ephemeral", "persistent-claim"):
        check.fail("spec/storage/type", f"{kind!r} is not jbod, ephemeral or persistent-claim")
    volumes = storage.get("volumes", []) if kind == "jbod" else [storage]
    if kind == "jbod" and not volumes:
        check.fail("spec/storage/volumes", "a jbod storage needs volumes")
    for i, volume in enumerate(volumes):
        where = f"spec/storage/volumes/{i}" if kind == "jbod" else "spec/storage"
        if kind == "jbod":
            check.only(volume, {"id", "type", "size", "class", "deleteClaim", "kraftMetadata"}, where)
            check.count(volume, "id", where, required=True)
        if volume.get("type") not in ("ephemeral", "persistent-claim"):
            check.fail(f"{where}/type", f"{volume.get('type')!r} is not ephemeral or persistent-claim")
        if volume.get("type") == "persistent-claim":
            check.typed(volume, "size", str, where, required=True)
        check.typed(volume, "deleteClaim", bool, where, required=False)
        if volume.get("kraftMetadata", "shared") != "shared":
            check.fail(f"{where}/kraftMetadata", f"{volume['kraftMetadata']!r} is not 'shared'")
    if "resources" in spec:
        check.errors += _embedded(spec["resources"], _CORE + "ResourceRequirements", "spec/resources")


def _kafka(check: _Check, obj: dict[str, Any]) -> None:
    spec = check.typed(obj, "spec", dict, "", required=True) or {}
    check.only(spec, {"kafka", "entityOperator", "cruiseControl", "kafkaExporter", "clusterCa", "clientsCa"}, "spec")
    kafka = check.typed(spec, "kafka", dict, "spec", required=True) or {}
    # kafka.strimzi.io/v1 has no spec.kafka.replicas/storage (node pools hold them) and no ZooKeeper.
    check.only(
        kafka,
        {"version", "metadataVersion", "listeners", "config", "resources", "authorization", "rack", "template"},
        "spec/kafka",
    )
    listeners = check.typed(kafka, "listeners", list, "spec/kafka", required=True) or []
    if not listeners:
        check.fail("spec/kafka/listeners", "a Kafka cluster needs at least one listener")
    names, ports = [], []
    for i, listener in enumerate(listeners):
        where = f"spec/kafka/listeners/{i}"
        if not isinstance(listener, dict):
            check.fail(where, "is not a mapping")
            continue
        check.only(
            listener, {"name", "port", "type", "tls", "authentication", "configuration", "networkPolicyPeers"}, where
        )
        name = check.typed(listener, "name", str, where, required=True)
        if name is not None and not _STRIMZI_LISTENER_NAME.match(name):
            check.fail(f"{where}/name", f"{name!r} does not match {_STRIMZI_LISTENER_NAME.pattern}")
        port = check.count(listener, "port", where, required=True, minimum=9092)
        if listener.get("type") not in _STRIMZI_LISTENER_TYPES:
            check.fail(f"{where}/type", f"{listener.get('type')!r} is not one of {sorted(_STRIMZI_LISTENER_TYPES)}")
        check.typed(listener, "tls", bool, where, required=True)
        peers = check.typed(listener, "networkPolicyPeers", list, where, required=False) or []
        for j, peer in enumerate(peers):
            check.errors += _embedded(
                peer, "io.k8s.api.networking.v1.NetworkPolicyPeer", f"{where}/networkPolicyPeers/{j}"
            )
        names.append(name)
        ports.append(port)
    for what, seen in (("name", names), ("port", ports)):
        if len(set(seen)) != len(seen):
            check.fail("spec/kafka/listeners", f"listeners share a {what}: {seen}")
    config = check.typed(kafka, "config", dict, "spec/kafka", required=False)
    for key, value in (config or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            check.fail(f"spec/kafka/config/{key}", f"{value!r} is not a scalar")
    operator = check.typed(spec, "entityOperator", dict, "spec", required=False) or {}
    check.only(operator, {"topicOperator", "userOperator", "template"}, "spec/entityOperator")
    check.typed(operator, "topicOperator", dict, "spec/entityOperator", required=False)


def _pod_template(check: _Check, group: dict[str, Any], where: str) -> None:
    template = check.typed(group, "template", dict, where, required=True)
    if template is None:
        return
    check.errors += _embedded(template, _CORE + "PodTemplateSpec", f"{where}/template")
    containers = template.get("spec", {}).get("containers") or []
    if not containers:
        check.fail(f"{where}/template/spec/containers", "a Ray node's pod needs its container")
    for i, container in enumerate(containers):
        at = f"{where}/template/spec/containers/{i}"
        check.typed(container, "image", str, at, required=True)
        resources_ = check.typed(container, "resources", dict, at, required=True) or {}
        if "limits" not in resources_:
            check.fail(f"{at}/resources", "has no limits (Ray offers the limits to its tasks and actors)")


def _ray_cluster(check: _Check, obj: dict[str, Any]) -> None:
    spec = check.typed(obj, "spec", dict, "", required=True) or {}
    check.only(
        spec,
        {
            "rayVersion",
            "enableInTreeAutoscaling",
            "autoscalerOptions",
            "headServiceAnnotations",
            "headGroupSpec",
            "workerGroupSpecs",
            "suspend",
            "managedBy",
            "gcsFaultToleranceOptions",
        },
        "spec",
    )
    check.typed(spec, "rayVersion", str, "spec", required=True)
    check.typed(spec, "enableInTreeAutoscaling", bool, "spec", required=False)
    head = check.typed(spec, "headGroupSpec", dict, "spec", required=True) or {}
    check.only(
        head, {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}, "spec/headGroupSpec"
    )
    check.typed(head, "serviceType", str, "spec/headGroupSpec", required=False)
    check.string_map(head, "rayStartParams", "spec/headGroupSpec", required=False)
    _pod_template(check, head, "spec/headGroupSpec")
    groups = check.typed(spec, "workerGroupSpecs", list, "spec", required=False) or []
    for i, group in enumerate(groups):
        where = f"spec/workerGroupSpecs/{i}"
        check.only(
            group,
            {
                "groupName",
                "replicas",
                "minReplicas",
                "maxReplicas",
                "idleTimeoutSeconds",
                "numOfHosts",
                "rayStartParams",
                "scaleStrategy",
                "suspend",
                "template",
            },
            where,
        )
        check.typed(group, "groupName", str, where, required=True)
        counts = [check.count(group, key, where, required=False) for key in ("minReplicas", "replicas", "maxReplicas")]
        given = [c for c in counts if c is not None]
        if given != sorted(given):
            check.fail(where, f"minReplicas <= replicas <= maxReplicas does not hold: {counts}")
        check.string_map(group, "rayStartParams", where, required=False)
        _pod_template(check, group, where)
    names = [g.get("groupName") for g in groups if isinstance(g, dict)]
    if len(set(names)) != len(names):
        check.fail("spec/workerGroupSpecs", f"group names repeat: {names}")


_CRD_CHECKS = {
    ("ray.io/v1", "RayCluster"): _ray_cluster,
    ("kafka.strimzi.io/v1", "Kafka"): _kafka,
    ("kafka.strimzi.io/v1", "KafkaNodePool"): _kafka_node_pool,
    ("kafka.strimzi.io/v1", "KafkaTopic"): _kafka_topic,
}


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """What an object of one of the CRD kinds gets wrong in the fields featurebus relies on, and in
    its ``metadata`` against Kubernetes' ObjectMeta."""
    check = _Check()
    check.only(obj, {"apiVersion", "kind", "metadata", "spec"}, "")
    metadata = check.typed(obj, "metadata", dict, "", required=True)
    if metadata is not None:
        check.typed(metadata, "name", str, "metadata", required=True)
        check.errors += _embedded(metadata, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "metadata")
    _CRD_CHECKS[(obj["apiVersion"], obj["kind"])](check, obj)
    return [e.lstrip("/") for e in check.errors]


def object_errors(obj: dict[str, Any]) -> list[str]:
    """What a Kubernetes object gets wrong: its schema for Kubernetes' own kinds, the structural
    checks of :func:`crd_errors` for the CRDs; an unknown kind is one error."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in KUBERNETES_KINDS:
        return kubernetes_errors(obj)
    if key in CRD_KINDS:
        return crd_errors(obj)
    return [f"<root>: no schema or check for {key}: add it to tests/deploy/_schemas.py"]
