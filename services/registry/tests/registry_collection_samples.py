"""Records that collections and batches need, stored straight into the twins' tables: buckets and
plugins in each state of readiness (as the plugin use cases would leave them)."""

from __future__ import annotations

from typing import Any

from registry_twins import Twins

from featurebus.common.events import FeatureSpec, PluginManifest
from featurebus.registry.records import Bucket, Namespace, Plugin

__all__ = ["bucket", "plugin"]


async def bucket(t: Twins, namespace: Namespace, name: str = "articles", objects: int = 3) -> Bucket:
    record = Bucket(
        id=f"bkt_{namespace.namespace_name}_{name}",
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        bucket_name=name,
        bucket_schema={"properties": {"text": {"type": "text"}}},
        object_count=objects,
    )
    await t.tables.buckets.insert(record)
    return record


async def plugin(
    t: Twins,
    namespace: Namespace,
    name: str = "text_embed",
    *,
    features: tuple[str, ...] = ("embedding",),
    scan_status: str = "passed",
    batch_enabled: bool = True,
    params: dict[str, Any] | None = None,
) -> Plugin:
    """A plugin of version 1.0.0: scanned, deployed for batches, declaring ``features`` unless told."""
    plugin_id = f"{name}_1_0_0"
    manifest = PluginManifest(
        feature_extractor_name=name,
        version="1.0.0",
        features=[FeatureSpec(feature_name=f, embedding_dim=4) for f in features],
    )
    record = Plugin(
        id=f"{namespace.id}/{plugin_id}",
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        plugin_id=plugin_id,
        name=name,
        version="1.0.0",
        archive_uri=f"s3://plugins/{plugin_id}.tar.gz",
        archive_sha256="0" * 64,
        size_bytes=1000,
        scan_status=scan_status,
        manifest=manifest if scan_status == "passed" else None,
        batch_enabled=batch_enabled,
        params=params or {},
    )
    await t.tables.plugins.save(record)
    return record
