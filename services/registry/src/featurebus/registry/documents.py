"""The registry's MongoDB documents (beanie). Ids are strings chosen by the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from featurebus.common.events import PluginManifest, RowFailure, VectorIndex, Violation

__all__ = [
    "ALL_DOCUMENTS",
    "ApiKey",
    "BatchDoc",
    "BlobUpload",
    "BucketDoc",
    "CollectionDoc",
    "FrameResult",
    "NamespaceDoc",
    "Organization",
    "PluginDoc",
    "PluginUpload",
    "RetrieverDoc",
    "SecretDoc",
    "now",
]


def now() -> datetime:
    return datetime.now(UTC)


class Organization(Document):
    id: str  # type: ignore[assignment]
    name: str
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "organizations"


class ApiKey(Document):
    id: str  # type: ignore[assignment]  # key id, e.g. key_...
    org_id: str
    name: str
    key_hash: str
    admin: bool = False
    namespaces: list[str] | None = None  # None = every namespace of the organization
    prefix: str | None = None  # the first characters of the key, to tell keys apart in a listing
    created_at: datetime = Field(default_factory=now)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None  # refreshed at most once a minute (key_rules.LAST_USED_EVERY)
    revoked_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes: ClassVar[list[IndexModel]] = [IndexModel([("key_hash", ASCENDING)], unique=True)]


class NamespaceDoc(Document):
    id: str  # type: ignore[assignment]
    org_id: str
    namespace_name: str
    description: str = ""
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "namespaces"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel([("org_id", ASCENDING), ("namespace_name", ASCENDING)], unique=True)
        ]


class PluginUpload(Document):
    id: str  # type: ignore[assignment]  # upload_id
    org_id: str
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    description: str = ""
    key: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "plugin_uploads"


class BlobUpload(Document):
    """A presigned upload of one binary blob into a bucket; ``verified`` once its bytes were checked."""

    id: str  # type: ignore[assignment]  # upload_id
    org_id: str
    namespace_id: str
    bucket_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str | None = None  # as declared by the client
    key: str  # where the presigned URL writes
    expires_at: datetime
    status: str = "pending"  # pending | verified
    # Set when verified: the immutable copy that blobs reference, and what was found in it.
    uri: str | None = None
    mime_type: str | None = None
    verified_sha256: str | None = None
    verified_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "blob_uploads"


class PluginDoc(Document):
    id: str  # type: ignore[assignment]  # f"{namespace_id}/{plugin_id}"
    org_id: str
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    description: str = ""
    archive_uri: str
    archive_sha256: str
    size_bytes: int
    status: str = "QUEUED"
    scan_status: str = "scanning"  # scanning | passed | failed
    violations: list[Violation] = Field(default_factory=list)
    manifest: PluginManifest | None = None
    deployment_type: str | None = None
    # A deploy asked for while the scan ran ("batch_only"), carried out when the scan passes.
    deploy_pending: str | None = None
    batch_enabled: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    class Settings:
        name = "plugins"


class BucketDoc(Document):
    id: str  # type: ignore[assignment]
    org_id: str
    namespace_id: str
    bucket_name: str
    bucket_schema: dict[str, Any]
    object_count: int = 0
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "buckets"


class CollectionDoc(Document):
    id: str  # type: ignore[assignment]
    org_id: str
    namespace_id: str
    collection_name: str
    feature_extractors: list[dict[str, Any]]  # [{feature_extractor_name, version, parameters, plugin_id}]
    bucket_ids: list[str]
    vector_indexes: list[VectorIndex]
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "collections"


class BatchDoc(Document):
    id: str  # type: ignore[assignment]  # batch_id
    org_id: str
    namespace_id: str
    bucket_id: str
    collection_ids: list[str]
    task_id: str
    object_ids: list[str] | None = None
    status: str = "PENDING"
    planned: bool = False
    frames_total: int = 0
    frames_done: int = 0
    rows_in: int = 0
    rows_embedded: int = 0
    rows_written: int = 0
    rows_failed: int = 0
    failure_summary: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    completed_at: datetime | None = None

    class Settings:
        name = "batches"
        indexes: ClassVar[list[IndexModel]] = [IndexModel([("task_id", ASCENDING)])]


class FrameResult(Document):
    """One frame's reconciled outcome (from batch.indexed); unique per batch and frame."""

    id: str  # type: ignore[assignment]  # f"{batch_id}/{frame_id}"
    batch_id: str
    frame_id: str
    collection_id: str
    rows_in: int
    rows_embedded: int
    rows_written: int
    failures: list[RowFailure] = Field(default_factory=list)

    class Settings:
        name = "frame_results"
        indexes: ClassVar[list[IndexModel]] = [IndexModel([("batch_id", ASCENDING)])]


class RetrieverDoc(Document):
    id: str  # type: ignore[assignment]
    org_id: str
    namespace_id: str
    retriever_name: str
    collection_ids: list[str] | None
    stages: list[dict[str, Any]]
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "retrievers"


class SecretDoc(Document):
    id: str  # type: ignore[assignment]  # f"{org_id}/{name}"
    org_id: str
    name: str
    ciphertext: str
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    class Settings:
        name = "secrets"


ALL_DOCUMENTS: list[type[Document]] = [
    Organization,
    ApiKey,
    NamespaceDoc,
    PluginUpload,
    PluginDoc,
    BucketDoc,
    BlobUpload,
    CollectionDoc,
    BatchDoc,
    FrameResult,
    RetrieverDoc,
    SecretDoc,
]
