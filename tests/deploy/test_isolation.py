"""The deploy files keep the sandbox's promise (README "Plugin sandbox", DESIGN.md §2): the pods
and containers where plugin code runs hold no service credential and reach only the Ray nodes,
the object store and DNS; the services reach only what they use; only those containers get the
kernel features bubblewrap needs, and every other one runs locked down.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from ._manifests import K8S_DIR, SERVICES, compose, env_example, k8s_objects, pod_specs, read_yaml
from ._network import ALL_PORTS, Pod, reachable, reachers

SANDBOX_OPTIONS = {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}
# Where plugin code runs (the Ray workers). Inference checks at start that they can sandbox it,
# from a Ray task on each of them (FEATUREBUS_SANDBOX_SELF_CHECK=workers), so it needs no sandbox host.
SANDBOX_PODS = {"ray-worker-cpu"}


@functools.cache
def templates() -> dict[str, dict[str, Any]]:
    """Every pod template of the base, by name: the Deployments' and the RayCluster's, each with
    the labels KubeRay adds to its pods."""
    found = {}
    for _, obj in k8s_objects():
        for name, template in pod_specs(obj):
            labels = dict(template["metadata"]["labels"])
            if obj["kind"] == "RayCluster":
                node_type = "head" if name == "ray-head" else "worker"
                labels |= {"ray.io/cluster": obj["metadata"]["name"], "ray.io/node-type": node_type}
            found[name] = {**template, "metadata": {**template["metadata"], "labels": labels}}
    return found


def policies(*extra: Path) -> list[dict[str, Any]]:
    found = [obj for _, obj in k8s_objects() if obj["kind"] == "NetworkPolicy"]
    for path in extra:
        found += [obj for obj in read_yaml(path) if obj["kind"] == "NetworkPolicy"]
    return found


@functools.cache
def pods() -> list[Pod]:
    """Our pods, and the ones of the operators and charts they talk to, with the labels those set."""
    ours = [Pod(name, t["metadata"]["labels"]) for name, t in templates().items()]
    system = {"kubernetes.io/metadata.name": "kube-system"}
    return [
        *ours,
        Pod(
            "kafka",
            {"strimzi.io/cluster": "featurebus", "strimzi.io/kind": "Kafka", "strimzi.io/name": "featurebus-kafka"},
        ),
        Pod("mongodb", {"app.kubernetes.io/name": "mongodb"}),
        Pod("minio", {"app.kubernetes.io/name": "minio"}),
        Pod("qdrant", {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": "qdrant"}),
        Pod("kube-dns", {"k8s-app": "kube-dns"}, "kube-system", system),
        Pod(
            "kuberay-operator",
            {"app.kubernetes.io/name": "kuberay-operator"},
            "ray-system",
            {"kubernetes.io/metadata.name": "ray-system"},
        ),
        Pod("someone-else", {"app": "unrelated"}, "other", {"kubernetes.io/metadata.name": "other"}),
    ]


def by_name(name: str) -> Pod:
    (pod,) = [p for p in pods() if p.name == name]
    return pod


DNS = {"kube-dns": frozenset({"UDP/53", "TCP/53"})}
RAY_PEERS = {"ray-head", "ray-worker-cpu", "inference"}
# What each of our pods must reach, and nothing more (ports: ALL_PORTS between Ray nodes).
EGRESS = {
    "registry": {
        "kafka": {"TCP/9092"},
        "mongodb": {"TCP/27017"},
        "minio": {"TCP/9000"},
        "inference": {"TCP/8010"},
        "indexer": {"TCP/8020"},
    },
    "scanner": {"kafka": {"TCP/9092"}, "minio": {"TCP/9000"}},
    "dispatcher": {"kafka": {"TCP/9092"}, "mongodb": {"TCP/27017"}, "minio": {"TCP/9000"}},
    "indexer": {"kafka": {"TCP/9092"}, "minio": {"TCP/9000"}, "qdrant": {"TCP/6333", "TCP/6334"}},
    "inference": {
        "kafka": {"TCP/9092"},
        "minio": {"TCP/9000"},
        "registry": {"TCP/8030"},
        "ray-head": {ALL_PORTS},
        "ray-worker-cpu": {ALL_PORTS},
    },
    "ray-head": {"ray-worker-cpu": {ALL_PORTS}, "inference": {ALL_PORTS}},
    "ray-worker-cpu": {"minio": {"TCP/9000"}, "ray-head": {ALL_PORTS}, "inference": {ALL_PORTS}},
}


# -- Kubernetes: network --------------------------------------------------------------------------


def test_every_featurebus_pod_starts_from_deny_all() -> None:
    deny = [p for p in policies() if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "a default-deny NetworkPolicy"
    for name, template in templates().items():
        labels = template["metadata"]["labels"]
        assert any(
            all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            for p in deny
        ), f"{name} is not under the default-deny policy"


@pytest.mark.parametrize("source", sorted(EGRESS))
def test_each_pod_reaches_only_what_it_needs(source: str) -> None:
    got = reachable(by_name(source), pods(), policies())
    want = {**EGRESS[source], **DNS}
    assert {k: set(v) for k, v in got.items()} == {k: set(v) for k, v in want.items()}


def test_ray_workers_reach_no_platform_server_and_no_address() -> None:
    """README "Plugin sandbox": no MongoDB, Kafka, registry or Qdrant, no metadata address."""
    got = reachable(by_name("ray-worker-cpu"), pods(), policies())
    assert not {"kafka", "mongodb", "qdrant", "registry", "indexer", "dispatcher", "scanner"} & set(got)
    for policy in policies():
        for rule in policy["spec"].get("egress") or []:
            assert all("ipBlock" not in peer for peer in rule.get("to") or []), (
                f"{policy['metadata']['name']}: no ipBlock in the base"
            )


def test_only_ray_nodes_reach_the_ray_workers() -> None:
    assert set(reachers(by_name("ray-worker-cpu"), pods(), policies())) == RAY_PEERS - {"ray-worker-cpu"}


def test_internal_apis_admit_only_their_callers() -> None:
    registry = reachers(by_name("registry"), pods(), policies())
    assert {name for name, ports in registry.items() if "TCP/8030" in ports or ALL_PORTS in ports} == {"inference"}
    assert "someone-else" in registry and registry["someone-else"] == frozenset({"TCP/8000"}), "the REST API is public"
    assert set(reachers(by_name("inference"), pods(), policies())) == {"registry", "ray-head", "ray-worker-cpu"}
    assert set(reachers(by_name("indexer"), pods(), policies())) == {"registry"}
    assert set(reachers(by_name("qdrant"), pods(), policies())) == {"indexer"}
    assert set(reachers(by_name("ray-head"), pods(), policies())) == {"inference", "ray-worker-cpu", "kuberay-operator"}


def test_plugin_egress_component_opens_only_public_web_ports() -> None:
    (extra,) = [p for p in policies(K8S_DIR / "components/plugin-egress/network-policy.yaml") if p not in policies()]
    assert extra["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "worker"
    (rule,) = extra["spec"]["egress"]
    assert {f"{p['protocol']}/{p['port']}" for p in rule["ports"]} == {"TCP/443", "TCP/80"}
    blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in rule["to"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"} <= blocks["0.0.0.0/0"]
    assert {"fc00::/7", "fe80::/10", "::1/128"} <= blocks["::/0"]


def test_kafka_admits_the_services_only() -> None:
    (kafka,) = [obj for _, obj in k8s_objects() if obj["kind"] == "Kafka"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    (peer,) = listener["networkPolicyPeers"]
    clients = {
        name
        for name, t in templates().items()
        if all(t["metadata"]["labels"].get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
    }
    assert clients == set(SERVICES)


# -- Kubernetes: credentials and kernel features --------------------------------------------------


def test_ray_pods_hold_no_service_credential() -> None:
    for name, template in templates().items():
        if not name.startswith("ray-"):
            continue
        for c in template["spec"]["containers"]:
            assert "envFrom" not in c, f"{name}: no featurebus-config or secrets in a Ray pod"
            assert not [e for e in c.get("env", []) if "valueFrom" in e or e["name"].startswith("FEATUREBUS_")], name


def test_no_pod_mounts_a_service_account_token_or_gets_service_links() -> None:
    for name, template in templates().items():
        spec = template["spec"]
        assert spec.get("automountServiceAccountToken") is False, f"{name} would get an API token"
        assert spec.get("enableServiceLinks") is False, (
            f"{name} would get <SERVICE>_PORT variables (FEATUREBUS_RAY_HEAD_SVC_...)"
        )


@pytest.mark.parametrize("name", sorted(templates()))
def test_pod_security(name: str) -> None:
    spec = templates()[name]["spec"]
    pod = spec.get("securityContext", {})
    assert pod.get("runAsNonRoot") is True and pod.get("runAsUser") == 1000
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged")
        assert sc.get("capabilities", {}).get("drop") == ["ALL"]
        if name in SANDBOX_PODS:
            # bubblewrap's namespaces and fresh /proc (README "Plugin sandbox").
            assert spec.get("hostUsers") is False
            assert sc.get("procMount") == "Unmasked"
            assert sc.get("seccompProfile", {}).get("type") == "Unconfined"
            assert sc.get("appArmorProfile", {}).get("type") == "Unconfined"
        else:
            assert "hostUsers" not in spec and "procMount" not in sc
            assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            assert "seccompProfile" not in sc and "appArmorProfile" not in sc
        if name in SERVICES and name not in SANDBOX_PODS:
            assert sc.get("readOnlyRootFilesystem") is True


def _sandbox_host(template: dict[str, Any]) -> bool:
    spec = template["spec"]
    sc = spec["containers"][0].get("securityContext", {})
    return spec.get("hostUsers") is False and sc.get("procMount") == "Unmasked"


def test_the_sandbox_is_checked_where_plugins_run() -> None:
    """FEATUREBUS_SANDBOX_SELF_CHECK: a driver pod without user namespaces checks on the Ray workers
    (which have them); the check is never skipped, and the sandbox is never turned off."""
    inference = templates()["inference"]
    env = {e["name"]: e.get("value") for e in inference["spec"]["containers"][0].get("env", [])}
    assert env.get("FEATUREBUS_SANDBOX", "enforce") == "enforce"
    where = env.get("FEATUREBUS_SANDBOX_SELF_CHECK", "driver")
    assert where == ("driver" if _sandbox_host(inference) else "workers"), where
    assert all(_sandbox_host(templates()[name]) for name in SANDBOX_PODS)
    services = compose(env_example())["services"]
    assert services["inference"]["environment"].get("FEATUREBUS_SANDBOX_SELF_CHECK", "driver") == "driver"
    assert "seccomp=unconfined" in services["inference"]["security_opt"], "compose's inference can sandbox itself"


# -- Compose --------------------------------------------------------------------------------------


def test_compose_ray_nodes_hold_no_service_credential() -> None:
    services = compose(env_example())["services"]
    for name in ("ray-head", "ray-worker"):
        assert not services[name].get("environment"), f"{name} gets no featurebus setting or credential"
        assert not services[name].get("env_file")


def test_compose_credentials_go_only_where_they_are_used() -> None:
    services = compose(env_example())["services"]
    holders = {
        "FEATUREBUS_SECRETS_KEY": {"registry"},
        "FEATUREBUS_ADMIN_API_KEY": {"registry"},
        "FEATUREBUS_MONGO_URI": {"registry", "dispatcher"},
        "FEATUREBUS_INTERNAL_TOKEN": {"registry", "inference", "indexer"},
        "FEATUREBUS_QDRANT_API_KEY": {"indexer"},
        "FEATUREBUS_LLM_API_KEY": {"inference"},
        "FEATUREBUS_S3_SECRET_KEY": set(SERVICES),
    }
    for variable, expected in holders.items():
        got = {name for name, spec in services.items() if variable in (spec.get("environment") or {})}
        assert got == expected, f"{variable} is given to {sorted(got)}"


def test_compose_sandbox_options_only_where_plugins_run() -> None:
    services = compose(env_example())["services"]
    for name, spec in services.items():
        options = set(spec.get("security_opt", []))
        if name in ("ray-worker", "inference"):
            assert options >= SANDBOX_OPTIONS | {"no-new-privileges:true"}, f"{name}: {options}"
        else:
            assert not options & SANDBOX_OPTIONS, f"{name} needs none of {options & SANDBOX_OPTIONS}"
        assert not spec.get("privileged"), f"{name} is privileged"
        if name in SERVICES or name.startswith("ray-"):
            assert spec.get("cap_drop") == ["ALL"], name
            assert "no-new-privileges:true" in options, name
        if name in SERVICES and name != "inference":
            assert spec.get("read_only") is True, name
