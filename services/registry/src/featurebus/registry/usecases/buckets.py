"""Buckets: where a namespace's objects go, each checked against the bucket's schema of properties."""

from __future__ import annotations

from typing import Any

from featurebus.common import ids
from featurebus.registry.auth import Principal, resolve_namespace
from featurebus.registry.bucket_schema import SchemaError, check_schema
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.records import Bucket, Namespace

__all__ = ["create_bucket", "get_bucket", "list_buckets", "namespace_bucket"]


async def namespace_bucket(c: Ctx, who: Principal, ns: str, bucket_id: str) -> tuple[Namespace, Bucket]:
    """The namespace (by id or name) and its bucket ``bucket_id``; NotFound unless the key may use both."""
    namespace = await resolve_namespace(c.tables, who, ns)
    bucket = await c.tables.buckets.find_one(id=bucket_id, namespace_id=namespace.id)
    if bucket is None:
        raise NotFound(f"bucket {bucket_id!r} not found in namespace {ns!r}")
    return namespace, bucket


async def create_bucket(c: Ctx, who: Principal, ns: str, name: str, schema: dict[str, Any]) -> Bucket:
    """Refused (Invalid, naming the field) unless ``schema`` maps property names to known blob types."""
    namespace = await resolve_namespace(c.tables, who, ns)
    try:
        check_schema(schema)
    except SchemaError as exc:
        raise Invalid(str(exc), exc.hint) from None
    if json_size(schema) > MAX_STORED_JSON:
        raise Invalid(f"bucket_schema is over {MAX_STORED_JSON} bytes as JSON", "keep to properties and types")
    bucket = Bucket(
        id=ids.new_id("bkt"), org_id=who.org_id, namespace_id=namespace.id, bucket_name=name, bucket_schema=schema
    )
    await c.tables.buckets.insert(bucket)
    return bucket


async def list_buckets(c: Ctx, who: Principal, ns: str, offset: int, limit: int) -> tuple[list[Bucket], int]:
    namespace = await resolve_namespace(c.tables, who, ns)
    return await c.tables.buckets.page(offset, limit, namespace_id=namespace.id)


async def get_bucket(c: Ctx, who: Principal, ns: str, bucket_id: str) -> Bucket:
    return (await namespace_bucket(c, who, ns, bucket_id))[1]
