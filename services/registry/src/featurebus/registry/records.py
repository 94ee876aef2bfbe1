"""What the registry stores: one record type per table. Ids are strings chosen by the registry.

Records are plain pydantic models, used alike by the in-memory tables (unit tests) and the MongoDB
ones (:mod:`featurebus.registry.mongo_tables` makes a beanie document of each). A record names its
table, the field sets that must be unique, and the fields it is looked up by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from featurebus.common.events import PluginManifest, RowFailure, VectorIndex, Violation
from featurebus.common.model_store import ModelFile

__all__ = [
    "ApiKey",
    "Batch",
    "BlobUpload",
    "Bucket",
    "Collection",
    "CollectionCounts",
    "FrameResult",
    "Model",
    "Namespace",
    "Organization",
    "Plugin",
    "PluginEnablement",
    "PluginUpload",
    "Retriever",
    "RetrieverExecution",
    "Secret",
    "SecretGrant",
    "now",
]


def now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    """A stored row: its id, its table, and what the table must enforce and look up fast."""

    id: str
    TABLE: ClassVar[str]
    UNIQUE: ClassVar[tuple[tuple[str, ...], ...]] = ()  # field sets no two records share
    LOOKUPS: ClassVar[tuple[str, ...]] = ()  # fields queried often (indexed)


class Organization(Record):
    name: str
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "organizations"


class ApiKey(Record):
    id: str  # key id, e.g. key_...
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

    TABLE: ClassVar[str] = "api_keys"
    UNIQUE: ClassVar[tuple[tuple[str, ...], ...]] = (("key_hash",),)


class Namespace(Record):
    org_id: str
    namespace_name: str
    description: str = ""
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "namespaces"
    UNIQUE: ClassVar[tuple[tuple[str, ...], ...]] = (
        (
            "org_id",
            "namespace_name",
        ),
    )


class PluginUpload(Record):
    id: str  # upload_id
    org_id: str
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    description: str = ""
    key: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "plugin_uploads"


class BlobUpload(Record):
    """A presigned upload of one binary blob into a bucket; ``verified`` once its bytes were checked."""

    id: str  # upload_id
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

    TABLE: ClassVar[str] = "blob_uploads"


class Model(Record):
    """A model of the cluster (``namespace_id`` None) or of one namespace (model_store's layout).

    ``pending`` until a confirm has stored and checked every file's blob and written the manifest;
    then ``ready``. A model fetched from the hub on first use is ``fetching``, then ``ready`` or
    ``failed`` (``error`` says why). ``uploads`` are the indexes of the files that were given a presigned URL (the
    others' blobs were stored already: content-addressed dedupe).
    """

    id: str  # model_id, mdl_...
    org_id: str  # of the key that imported it (cluster models are the whole installation's)
    namespace_id: str | None = None
    name: str
    revision: str
    source: str | None = None
    files: list[ModelFile]
    uploads: list[int] = Field(default_factory=list)
    expires_at: datetime  # of the presigned URLs
    status: str = "pending"  # pending | ready; fetching | failed (from the model hub, with ``error``)
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    ready_at: datetime | None = None

    TABLE: ClassVar[str] = "models"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("namespace_id", "name")


class Plugin(Record):
    """A plugin version of a namespace, or of the whole organization (then ``namespace_id`` is the
    org_id: the scope it was uploaded to, which the scan's round trip carries back unchanged)."""

    id: str  # f"{namespace_id}/{plugin_id}"
    org_id: str
    namespace_id: str  # the namespace's id, or the org_id for an organization plugin
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
    # Real-time (Ray Serve): the deployment that serves this version, the one starting to replace
    # it (blue-green), and what inference last reported of the rollout.
    serving: str | None = None
    rollout: str | None = None
    replicas_ready: int = 0
    replicas_desired: int = 0
    rollout_error: str | None = None
    deployed_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "plugins"

    @property
    def organization_wide(self) -> bool:
        """Uploaded to the organization (``POST /v1/plugins/uploads``), for namespaces to enable."""
        return self.namespace_id == self.org_id


class PluginEnablement(Record):
    """An organization plugin as one namespace enabled (or later disabled) it."""

    id: str  # f"{namespace_id}/{plugin_id}"
    org_id: str
    namespace_id: str
    plugin_id: str
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)  # the plugin's default parameters here
    deploy: bool = True  # deployed for batch processing in this namespace
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "plugin_enablements"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("org_id", "plugin_id")


class Bucket(Record):
    org_id: str
    namespace_id: str
    bucket_name: str
    bucket_schema: dict[str, Any]
    object_count: int = 0
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "buckets"


class Collection(Record):
    org_id: str
    namespace_id: str
    collection_name: str
    feature_extractors: list[dict[str, Any]]  # [{feature_extractor_name, version, parameters, plugin_id}]
    bucket_ids: list[str]
    vector_indexes: list[VectorIndex]
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "collections"


class CollectionCounts(BaseModel):
    """One collection's share of a batch's counts, summed over its frames reported so far.

    Summed from the same frame results as the batch's totals: over a batch's collections,
    rows_embedded, rows_written and rows_failed add up to the batch's, and rows_in does too once
    every frame is reported (until then it counts the rows of the frames reported).
    """

    collection_id: str
    rows_in: int = 0
    rows_embedded: int = 0
    rows_written: int = 0
    rows_failed: int = 0


class Batch(Record):
    id: str  # batch_id
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
    # Rows that never ran because the batch was cancelled (DELETE /v1/tasks/{task_id}).
    rows_cancelled: int = 0
    failure_summary: dict[str, int] = Field(default_factory=dict)
    # One entry per collection, in collection_ids order. None: a batch stored before the registry
    # kept them, until its next refresh (a frame, a replay, its plan).
    collections: list[CollectionCounts] | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None

    TABLE: ClassVar[str] = "batches"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("task_id",)


class FrameResult(Record):
    """One frame's reconciled outcome (from batch.indexed); unique per batch and frame."""

    id: str  # f"{batch_id}/{frame_id}"
    batch_id: str
    frame_id: str
    collection_id: str
    rows_in: int
    rows_embedded: int
    rows_written: int
    failures: list[RowFailure] = Field(default_factory=list)

    TABLE: ClassVar[str] = "frame_results"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("batch_id",)


class Retriever(Record):
    org_id: str
    namespace_id: str
    retriever_name: str
    collection_ids: list[str] | None
    stages: list[dict[str, Any]]
    # A JSON schema of the execute call's input: every {{INPUT.x}} is one of its properties, and
    # each input is checked against it. None: any input (each placeholder must be given).
    input_schema: dict[str, Any] | None = None
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "retrievers"


class RetrieverExecution(Record):
    """One execution of a retriever, kept for its history (the most recent ``retriever_history``):
    its input, what each stage did, and how it ended (``completed``, or ``failed`` with the error
    the caller got)."""

    id: str  # rex_...
    org_id: str
    namespace_id: str
    retriever_id: str
    inputs: dict[str, Any]
    limit: int | None = None
    status: str  # completed | failed
    result_count: int = 0
    execution_time_ms: float
    stage_statistics: list[dict[str, Any]] = Field(default_factory=list)
    error: dict[str, Any] | None = None  # {"status", "detail", "hint"}
    created_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "retriever_executions"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("retriever_id",)


class Secret(Record):
    id: str  # f"{org_id}/{name}"
    org_id: str
    name: str
    ciphertext: str
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "secrets"


class SecretGrant(Record):
    """The organization secrets an org admin granted one plugin in one namespace: all that its code gets.

    Bound to the plugin version's archive (``archive_sha256``): a grant left over from a deleted
    plugin never passes to another archive uploaded later under the same id.
    """

    id: str  # f"{org_id}/{namespace_id}/{plugin_id}"
    org_id: str
    namespace_id: str
    plugin_id: str
    archive_sha256: str
    secret_names: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    TABLE: ClassVar[str] = "secret_grants"
    LOOKUPS: ClassVar[tuple[str, ...]] = ("org_id", "plugin_id")
