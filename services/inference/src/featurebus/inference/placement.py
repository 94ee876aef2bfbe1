"""Where a plugin's actors may run: Ray actor options from its compute profile, and why they cannot.

Pure functions over the manifest's ``compute_profile`` and the cluster's resource totals (no Ray
import), so that an actor asking for something the cluster does not have fails the frame at once
with a reason that names the fix, instead of waiting forever to be scheduled.
"""

from __future__ import annotations

from typing import Any

from featurebus.common.events import ComputeProfile

__all__ = ["ACTOR_THREADS", "actor_options", "placement_problem"]

GIB = 2**30
# Two calls at once per actor: a query is embedded while a frame runs in the same warm actor.
ACTOR_THREADS = 2


def actor_options(profile: ComputeProfile, actor_num_cpus: float) -> dict[str, Any]:
    """``ray.remote(...).options(**this)`` for one actor of a plugin with ``profile``."""
    options: dict[str, Any] = {
        "num_cpus": actor_num_cpus,
        "memory": int(profile.actor_memory_gb * GIB),
        "max_concurrency": ACTOR_THREADS,
    }
    if profile.resource_type == "gpu":
        options["num_gpus"] = 1
    return options


def placement_problem(
    plugin_id: str, profile: ComputeProfile, actor_num_cpus: float, cluster: dict[str, float]
) -> str | None:
    """Why no actor of this plugin can ever be scheduled on ``cluster`` (``ray.cluster_resources()``), or None."""
    have = ", ".join(f"{k}={_show(k, v)}" for k, v in sorted(cluster.items()) if k in ("CPU", "GPU", "memory"))
    if profile.resource_type == "gpu" and cluster.get("GPU", 0) < 1:
        return (
            f"plugin {plugin_id} asks for a GPU (compute_profile.resource_type='gpu') but the Ray cluster has none "
            f"({have}): set resource_type to 'cpu' in manifest.py's compute_profile, or point "
            "FEATUREBUS_RAY_ADDRESS at a cluster with GPU nodes"
        )
    wanted = profile.actor_memory_gb * GIB
    if "memory" in cluster and wanted > cluster["memory"]:
        return (
            f"plugin {plugin_id} asks for {profile.actor_memory_gb:g} GiB per actor "
            f"(compute_profile.actor_memory_gb) but the Ray cluster offers actors {_show('memory', cluster['memory'])} "
            f"in all: lower actor_memory_gb in manifest.py's compute_profile"
        )
    if actor_num_cpus > cluster.get("CPU", 0):
        return (
            f"an actor asks for {actor_num_cpus:g} CPUs (FEATUREBUS_ACTOR_NUM_CPUS) but the Ray cluster has "
            f"{cluster.get('CPU', 0):g}: lower FEATUREBUS_ACTOR_NUM_CPUS"
        )
    return None


def _show(key: str, value: float) -> str:
    return f"{value / GIB:.1f}GiB" if key == "memory" else f"{value:g}"
