"""A small evaluator of Kubernetes NetworkPolicies, for the deploy tests: which pods (of a known
set, with their labels and namespaces) a pod may reach, or be reached from, and on which ports.

It follows the API's semantics for what these manifests use: a pod selected by a policy of a
direction is isolated in that direction and allowed the union of the rules of the policies that
select it; a peer is a podSelector (in the policy's namespace), a namespaceSelector (with an
optional podSelector) or an ipBlock; a rule without peers allows every peer, one without ports
every port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALL_PORTS", "Pod", "reachable", "reachers", "selects"]

ALL_PORTS = "all"


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str] = field(hash=False)
    namespace: str = "featurebus"
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector matches ``labels`` (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # pods are matched by selectors; ipBlocks are checked on their own
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], pod.namespace_labels)
    else:
        in_namespace = pod.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector"), pod.labels)


def _ports(rule: dict[str, Any]) -> frozenset[Any]:
    ports = rule.get("ports")
    if not ports:
        return frozenset({ALL_PORTS})
    return frozenset(f"{p.get('protocol', 'TCP')}/{p['port']}" for p in ports)


def _governing(pod: Pod, policies: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    return [
        p
        for p in policies
        if p["metadata"].get("namespace", "featurebus") == pod.namespace
        and selects(p["spec"].get("podSelector"), pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]


def _allowed(
    source: Pod, target: Pod, policies: list[dict[str, Any]], direction: str, subject: Pod
) -> frozenset[Any] | None:
    """Ports the ``direction`` policies of ``subject`` allow between source and target (None: not isolated)."""
    governing = _governing(subject, policies, direction)
    if not governing:
        return None
    other = target if direction == "Egress" else source
    key = "egress" if direction == "Egress" else "ingress"
    peers_key = "to" if direction == "Egress" else "from"
    ports: set[Any] = set()
    for policy in governing:
        namespace = policy["metadata"].get("namespace", "featurebus")
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if not peers or any(_peer_matches(peer, namespace, other) for peer in peers):
                ports |= _ports(rule)
    return frozenset(ports)


def reachable(source: Pod, pods: list[Pod], policies: list[dict[str, Any]]) -> dict[str, frozenset[Any]]:
    """The pods ``source`` may open connections to (egress of the source and ingress of the
    target both allowing it), with the ports: ``{pod name: ports}``."""
    found = {}
    for target in pods:
        if target.name == source.name:
            continue
        out = _allowed(source, target, policies, "Egress", source)
        into = _allowed(source, target, policies, "Ingress", target)
        if out is not None and not out:
            continue
        if into is not None and not into:
            continue
        if out is None or ALL_PORTS in out:
            ports = into if into is not None else frozenset({ALL_PORTS})
        elif into is None or ALL_PORTS in into:
            ports = out
        else:
            ports = out & into
        if ports:
            found[target.name] = ports
    return found


def reachers(target: Pod, pods: list[Pod], policies: list[dict[str, Any]]) -> dict[str, frozenset[Any]]:
    """The pods that may open connections to ``target``, with the ports."""
    return {
        source.name: ports
        for source in pods
        if source.name != target.name
        for name, ports in reachable(source, pods, policies).items()
        if name == target.name
    }
