"""Where a plugin's actors may run: Ray actor options from its compute profile, and why they cannot.

Pure functions over the manifest's ``compute_profile`` and the resources of the cluster's nodes
(no Ray import), so that an actor asking for something no node has fails the frame at once with a
reason that names the fix, instead of waiting forever to be scheduled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from featurebus.common.events import ComputeProfile

__all__ = [
    "ACTOR_THREADS",
    "API_ACTOR_CPUS",
    "DEFAULT_GPU_MEMORY_GB",
    "POOL_SCHEDULING",
    "actor_options",
    "placement_problem",
]

GIB = 2**30
# Two calls at once per actor: a query is embedded while a frame runs in the same warm actor.
ACTOR_THREADS = 2
# The actors of a pool go to different nodes where they can: a pool exists to run frames side by
# side, each actor is CPU-bound, and a lost node then takes only part of a pool with it. (Ray's
# default packs actors onto the driver's node until it is half used.) On one node it changes nothing.
POOL_SCHEDULING = "SPREAD"


# An "api" plugin's actors mostly wait on the network: they ask for this much CPU at most.
API_ACTOR_CPUS = 0.1
# Memory of one GPU of the cluster, when FEATUREBUS_GPU_MEMORY_GB does not say (a 16 GiB card).
DEFAULT_GPU_MEMORY_GB = 16.0


def actor_options(
    profile: ComputeProfile,
    actor_num_cpus: float,
    node_cpus: float = 1.0,
    gpu_size_gb: float = DEFAULT_GPU_MEMORY_GB,
    cluster_gpus: bool = False,
) -> dict[str, Any]:
    """``ray.remote(...).options(**this)`` for one actor of a plugin with ``profile``.

    - ``actor_memory_gb`` → ``memory``; ``max_concurrency`` is the pool's size (see pools.py).
    - ``resource_type="gpu"`` (or a step's ``ResourceType.GPU`` where ``cluster_gpus``) → one GPU, or the share ``gpu_memory_gb / gpu_size_gb`` of one, so
      that the actors of small models share a card; ``"api"`` with only API steps → at most API_ACTOR_CPUS.
    - Math libraries get ``node_cpus / max_concurrency`` threads (OMP_NUM_THREADS; Ray would set
      1 for an actor with a fraction of a CPU): a pool of one actor may use the whole node, a pool
      of N actors shares it. Their idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE) instead
      of spinning for the next parallel region: on a node the services share, spinning takes CPU
      they need (all-MiniLM-L6-v2, 2 threads: 18% less CPU per 64-text frame, 20% less per query,
      and no slower).
    """
    api = profile.api_only
    threads = 1 if api else max(1, int(node_cpus // profile.max_concurrency))
    options: dict[str, Any] = {
        "num_cpus": min(actor_num_cpus, API_ACTOR_CPUS) if api else actor_num_cpus,
        "memory": int(profile.actor_memory_gb * GIB),
        "max_concurrency": ACTOR_THREADS,
        "scheduling_strategy": POOL_SCHEDULING,
        "runtime_env": {"env_vars": {**_threads(threads), "OMP_WAIT_POLICY": "PASSIVE"}},
    }
    if profile.resource_type == "gpu" or (profile.wants_gpu and cluster_gpus):
        share = (profile.gpu_memory_gb or gpu_size_gb) / gpu_size_gb
        options["num_gpus"] = 1 if share >= 1 else round(share, 3)
    return options


def _threads(n: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}


def placement_problem(
    plugin_id: str,
    profile: ComputeProfile,
    actor_num_cpus: float,
    nodes: Sequence[Mapping[str, float]],
    gpu_size_gb: float = DEFAULT_GPU_MEMORY_GB,
) -> str | None:
    """Why no node of the cluster could ever host an actor of this plugin, or None.

    ``nodes`` are the total resources of each live node (``ray.nodes()[i]["Resources"]``): an actor
    runs on one node, so a cluster whose nodes add up to enough but of which none is big enough
    cannot place it either.
    """
    gpu = profile.resource_type == "gpu"  # a step's GPU is a wish: without GPUs the step runs on CPU
    memory = profile.actor_memory_gb * GIB
    largest = {key: max((n.get(key, 0.0) for n in nodes), default=0.0) for key in ("CPU", "GPU", "memory")}
    have = _describe(nodes)
    if gpu and largest["GPU"] < 1:
        return (
            f"plugin {plugin_id} asks for a GPU (compute_profile.resource_type='gpu') but the Ray cluster has none "
            f"({have}): set resource_type to 'cpu' in manifest.py's compute_profile, or point "
            "FEATUREBUS_RAY_ADDRESS at a cluster with GPU nodes"
        )
    if gpu and (profile.gpu_memory_gb or 0) > gpu_size_gb:
        return (
            f"plugin {plugin_id} asks for {profile.gpu_memory_gb:g} GiB of GPU memory per actor "
            f"(compute_profile.gpu_memory_gb) but the cluster's GPUs have {gpu_size_gb:g} GiB "
            "(FEATUREBUS_GPU_MEMORY_GB): lower gpu_memory_gb in manifest.py's compute_profile"
        )
    if memory > largest["memory"] and any("memory" in n for n in nodes):
        return (
            f"plugin {plugin_id} asks for {profile.actor_memory_gb:g} GiB per actor "
            f"(compute_profile.actor_memory_gb) but the largest Ray node offers actors "
            f"{_show('memory', largest['memory'])} ({have}): lower actor_memory_gb in manifest.py's compute_profile"
        )
    if actor_num_cpus > largest["CPU"]:
        return (
            f"an actor asks for {actor_num_cpus:g} CPUs (FEATUREBUS_ACTOR_NUM_CPUS) but the largest Ray node has "
            f"{largest['CPU']:g} ({have}): lower FEATUREBUS_ACTOR_NUM_CPUS"
        )
    if not any(_fits(n, actor_num_cpus, memory, gpu) for n in nodes):
        needs = f"{actor_num_cpus:g} CPU, {_show('memory', memory)} memory" + (" and a GPU" if gpu else "")
        return (
            f"no single Ray node has what an actor of plugin {plugin_id} asks for together ({needs}; {have}): "
            "lower compute_profile.actor_memory_gb or FEATUREBUS_ACTOR_NUM_CPUS, or add a node that has it all"
        )
    return None


def _fits(node: Mapping[str, float], cpus: float, memory: float, gpu: bool) -> bool:
    return (
        node.get("CPU", 0.0) >= cpus
        and ("memory" not in node or node["memory"] >= memory)
        and (not gpu or node.get("GPU", 0.0) >= 1)
    )


def _describe(nodes: Sequence[Mapping[str, float]], at_most: int = 4) -> str:
    if not nodes:
        return "no live nodes"
    shown = [
        ", ".join(f"{k}={_show(k, v)}" for k, v in sorted(n.items()) if k in ("CPU", "GPU", "memory"))
        for n in nodes[:at_most]
    ]
    if len(nodes) == 1:
        return shown[0]
    more = f"; and {len(nodes) - at_most} more nodes" if len(nodes) > at_most else ""
    return "; ".join(f"node {i + 1}: {s}" for i, s in enumerate(shown)) + more


def _show(key: str, value: float) -> str:
    return f"{value / GIB:.1f}GiB" if key == "memory" else f"{value:g}"
