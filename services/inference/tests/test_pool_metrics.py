"""The warm pools' series, observed around their actor backend (no Ray: in-process actors)."""

from __future__ import annotations

from pathlib import Path

from inference_twins import InProcessActors, frame, toy_archive
from prometheus_client import REGISTRY

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginRef
from featurebus.common.objectstore import sha256_hex
from featurebus.inference.pool_metrics import ObservedActors
from featurebus.inference.pools import WarmPools


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_first_call_of_an_actor_is_cold_the_next_warm_and_a_reaped_pool_leaves_the_gauges(
    tmp_path: Path,
) -> None:
    archive = toy_archive()
    plugin = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri="s3://featurebus/plugins/toy.zip",
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
        compute_profile=ComputeProfile(max_concurrency=1),
        namespace_id="ns_1",
    )
    now = [0.0]
    pools = WarmPools(ObservedActors(InProcessActors(str(tmp_path))), idle_seconds=60, clock=lambda: now[0])
    starts = value("featurebus_inference_actor_starts_total")
    cold = value("featurebus_inference_actor_calls_total", method="process", start="cold")
    warm = value("featurebus_inference_actor_calls_total", method="process", start="warm")
    for _ in range(2):
        await pools.process(plugin, lambda: archive, frame(["a", "bb"]), timeout=30)
    assert value("featurebus_inference_actor_starts_total") == starts + 1
    assert value("featurebus_inference_actor_calls_total", method="process", start="cold") == cold + 1
    assert value("featurebus_inference_actor_calls_total", method="process", start="warm") == warm + 1
    assert (value("featurebus_inference_pool_actors"), value("featurebus_inference_pools")) == (1, 1)
    now[0] = 120.0
    await pools.reap_idle()
    assert (value("featurebus_inference_pool_actors"), value("featurebus_inference_pools")) == (0, 0)
