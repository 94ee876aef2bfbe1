"""Every payload that crosses a Kafka topic.

Rules (DESIGN.md §1): each event carries ``event_id``, ``occurred_at``, ``schema_version`` and
trace context; changes are additive (new fields get defaults), and unknown fields are ignored so
that an old consumer keeps reading a newer producer's messages. Large things (archives, frames,
vectors) live in the object store and travel here as ``s3://`` URIs with a SHA-256 checksum.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchCancelled",
    "BatchIndexed",
    "BatchPlanned",
    "BatchReady",
    "BatchRequested",
    "BatchTriggered",
    "Blob",
    "CollectionLifecycle",
    "CollectionTarget",
    "ComputeProfile",
    "DeployRequested",
    "DeploymentChanged",
    "Event",
    "FeatureSpec",
    "IngestedObject",
    "ObjectsIngested",
    "PluginManifest",
    "PluginRef",
    "PluginScanned",
    "PluginUploaded",
    "ReasonCode",
    "RowFailure",
    "VectorIndex",
    "VectorsProduced",
    "Violation",
]


def _now() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Event(_Model):
    """Envelope fields shared by every event."""

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=_now)
    schema_version: int = 1
    # W3C trace context (``traceparent``/``tracestate``) of the span that produced the event.
    trace: dict[str, str] = Field(default_factory=dict)


# ----------------------------------------------------------------------------- plugin contract


DistanceMetric = Literal["cosine", "euclid", "dot"]


class FeatureSpec(_Model):
    """One entry of a manifest's ``features``: one named vector in Qdrant."""

    feature_name: str
    feature_type: Literal["embedding"] = "embedding"
    embedding_dim: int = Field(gt=0)
    distance_metric: DistanceMetric = "cosine"


class ComputeProfile(_Model):
    """The manifest's ``compute_profile``, with the guide's defaults."""

    resource_type: Literal["cpu", "gpu", "api"] = "cpu"
    batch_size: int = Field(default=64, gt=0, le=10_000)
    max_concurrency: int = Field(default=2, gt=0, le=256)
    actor_memory_gb: float = Field(default=2.0, gt=0)
    gpu_memory_gb: float | None = None
    # Real-time (Ray Serve) replicas: autoscaled between these, aiming at this many requests in
    # flight per replica; each replica has ``actor_memory_gb`` and, for "gpu", one GPU's share.
    min_replicas: int = Field(default=1, ge=1, le=64)
    max_replicas: int | None = Field(default=None, ge=1, le=256)  # None: max(min_replicas, max_concurrency)
    target_ongoing_requests: float = Field(default=2.0, gt=0, le=1000)
    # The ResourceType of each pipeline step the scanner read (StepDefinition(resource_type=...)):
    # the workers get what any step needs — a GPU for a GPU step where the cluster has GPUs,
    # outbound network for an API step.
    step_resource_types: list[Literal["cpu", "gpu", "api"]] = Field(default_factory=list)

    @property
    def wants_gpu(self) -> bool:
        """A step asks for a GPU: its workers get one where the cluster has GPUs (and run on CPU
        where it has none); ``resource_type="gpu"`` requires one."""
        return self.resource_type == "gpu" or "gpu" in self.step_resource_types

    @property
    def uses_api(self) -> bool:
        """Some step calls an external API: the sandbox may give it outbound network."""
        return self.resource_type == "api" or "api" in self.step_resource_types

    @property
    def api_only(self) -> bool:
        """Every step only waits on an API: an actor needs little CPU and one math thread."""
        return self.resource_type == "api" and all(t == "api" for t in self.step_resource_types)


class PluginManifest(_Model):
    """What the scanner read out of ``manifest.py`` (statically, never by running it)."""

    feature_extractor_name: str
    version: str  # normalised X.Y.Z
    description: str = ""
    category: str | None = None
    features: list[FeatureSpec] = Field(default_factory=list)
    compute_profile: ComputeProfile = Field(default_factory=ComputeProfile)
    feature_uri: str | None = None
    supported_input_types: list[str] = Field(default_factory=list)
    has_realtime: bool = False
    output_schema: dict[str, Any] | None = None
    # Models the plugin's code names (read statically, or listed in the manifest's ``models``):
    # Hugging Face repo ids of cluster models, and names passed to load_namespace_model. Workers
    # lay these out on their node before the plugin's first frame.
    models: list[str] = Field(default_factory=list)
    namespace_models: list[str] = Field(default_factory=list)
    # Organization secrets the plugin's code reads (``secrets.get("NAME")`` with a constant name, or
    # the manifest's ``secrets`` list). An org admin grants them per plugin; workers get only those.
    secrets: list[str] = Field(default_factory=list)
    # The plugin's own environment: exact pins (``name==version``) of the platform's installable
    # packages its ``dependencies`` need beyond the workers' libraries; [] runs it in theirs.
    environment: list[str] = Field(default_factory=list)


class Violation(_Model):
    filename: str
    line: int = 0
    severity: Literal["ERROR", "WARNING", "INFO"] = "ERROR"
    code: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.filename}:{self.line} [{self.severity}] {self.message}"


class PluginUploaded(Event):
    """registry → scanner: an archive was confirmed and waits for its scan."""

    org_id: str
    namespace_id: str
    plugin_id: str
    upload_id: str
    name: str
    version: str
    archive_uri: str
    archive_sha256: str
    size_bytes: int


class PluginScanned(Event):
    """scanner → registry: the verdict on one archive (by checksum)."""

    org_id: str
    namespace_id: str
    plugin_id: str
    archive_sha256: str
    passed: bool
    violations: list[Violation] = Field(default_factory=list)
    manifest: PluginManifest | None = None


class PluginRef(_Model):
    """Everything a worker needs to load and run one plugin version."""

    plugin_id: str
    name: str
    version: str
    archive_uri: str
    archive_sha256: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    compute_profile: ComputeProfile = Field(default_factory=ComputeProfile)
    features: list[FeatureSpec] = Field(default_factory=list)
    # The namespace the plugin runs for: inference sets it from the event it serves, and never
    # lets two namespaces share a worker process.
    namespace_id: str = ""
    # From the manifest (PluginManifest.models / namespace_models): laid out before the plugin starts.
    models: list[str] = Field(default_factory=list)
    namespace_models: list[str] = Field(default_factory=list)
    # PluginManifest.secrets: the secret names an org admin may grant this plugin.
    secrets: list[str] = Field(default_factory=list)
    # PluginManifest.environment: installed on the worker's node before the plugin starts.
    environment: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- real-time deployments


DeploymentStatus = Literal["PENDING", "IN_PROGRESS", "DEPLOYED", "FAILED", "NOT_DEPLOYED"]


class DeployRequested(Event):
    """Start (``deploy``) or stop (``undeploy``) one real-time deployment of a plugin version.

    ``deployment`` is the deployment's name, chosen by the registry and unique per request; on
    deploy, ``replaces`` names the deployment that serves the plugin now (blue-green): it keeps
    serving until the new one has passed its health check, and is stopped after that. An undeploy
    also frees the plugin's warm batch actors in the namespace (they start again on demand).
    ``warm`` (a batch-only deploy) starts the plugin's first batch actor in the namespace — its
    environment, models and load — so that its first frame finds it warm.
    """

    org_id: str
    namespace_id: str
    action: Literal["deploy", "undeploy", "warm"]
    plugin_id: str
    # deploy: the deployment to start; undeploy: the one to stop (None: only the batch actors).
    deployment: str | None = None
    plugin: PluginRef | None = None  # deploy and warm: what to run
    replaces: str | None = None


class DeploymentChanged(Event):
    """Progress of a real-time deployment, as inference sees it (status and replicas ready/desired).

    DEPLOYED means the deployment passed its health check and now serves the plugin (``replaced``
    names the one it took over from, which is being stopped). FAILED carries the reason; a
    deployment that was to replace another leaves that one serving.
    """

    org_id: str
    namespace_id: str
    plugin_id: str
    deployment: str
    status: DeploymentStatus
    replicas_ready: int = 0
    replicas_desired: int = 0
    error: str | None = None
    replaced: str | None = None


# ----------------------------------------------------------------------------- ingest and batches


class Blob(_Model):
    """One blob of an object: inline text in ``data``, or bytes in the object store at ``uri``."""

    blob_id: str
    property: str
    type: Literal["text", "image", "video", "audio", "pdf", "document", "binary"] = "text"
    data: str | None = None
    uri: str | None = None
    mime_type: str = "text/plain"
    size_bytes: int = 0
    # SHA-256 of the bytes at ``uri`` (None for inline text), checked by the registry at upload.
    sha256: str | None = None


class IngestedObject(_Model):
    object_id: str
    blobs: list[Blob]
    metadata: dict[str, Any] = Field(default_factory=dict)


class ObjectsIngested(Event):
    """registry (or any producer) → dispatcher: objects were added to a bucket."""

    org_id: str
    namespace_id: str
    bucket_id: str
    objects: list[IngestedObject]


class CollectionTarget(_Model):
    collection_id: str
    feature_extractors: list[PluginRef]


class BatchTriggered(Event):
    """registry (or any producer) → dispatcher: process a bucket's objects into collections."""

    org_id: str
    namespace_id: str
    bucket_id: str
    batch_id: str
    collections: list[CollectionTarget]
    # Restrict the batch to these objects (a retry of failed documents); None = every object.
    object_ids: list[str] | None = None
    # How many objects the producer knows the bucket holds. Objects and triggers travel on
    # different topics, so the dispatcher waits (briefly) until it has stored at least this many
    # before it snapshots the bucket; None = don't wait.
    expected_objects: int | None = None


class BatchRequested(Event):
    """any producer → registry: run a batch over a bucket into collections (the REST trigger, on Kafka).

    The registry resolves the collections' feature extractors and publishes BatchTriggered, exactly
    as for ``POST .../batches/trigger``. ``batch_id`` makes a replayed request start nothing new.
    """

    org_id: str
    namespace_id: str
    bucket_id: str
    collection_ids: list[str]
    batch_id: str | None = None
    object_ids: list[str] | None = None


class BatchPlanned(Event):
    """dispatcher → registry: how many frames and rows a batch became."""

    batch_id: str
    namespace_id: str
    frames_total: int
    rows_in: int
    # Set when the batch cannot run at all (e.g. the bucket has no objects).
    error: str | None = None


class BatchReady(Event):
    """dispatcher → inference: one Parquet frame of rows for one plugin of one collection."""

    org_id: str
    namespace_id: str
    bucket_id: str
    batch_id: str
    frame_id: str
    frame_index: int
    collection_id: str
    plugin: PluginRef
    frame_uri: str
    frame_sha256: str
    row_count: int


class ReasonCode(StrEnum):
    """Why one row failed. Carried from where it failed to the batch's failed-documents list."""

    PLUGIN_LOAD_FAILED = "plugin_load_failed"
    PLUGIN_EXCEPTION = "plugin_exception"
    NULL_OUTPUT = "null_output"
    MISSING_OUTPUT_COLUMN = "missing_output_column"
    ROW_COUNT_MISMATCH = "row_count_mismatch"
    INVALID_VECTOR = "invalid_vector"
    UNKNOWN_VECTOR_NAME = "unknown_vector_name"
    DIMENSION_MISMATCH = "dimension_mismatch"
    # All zeros (or, under cosine, a norm too small to normalise): a placeholder, not an embedding.
    ZERO_VECTOR = "zero_vector"
    # A call of concurrent_api_calls failed: its row fails rather than getting an empty result.
    API_ERROR = "api_error"
    # A container.llm call failed (the provider answered an error, timed out, or is not configured).
    LLM_ERROR = "llm_error"
    # The model a step loads is not on this worker (no model hub here): names it and the fix.
    MODEL_NOT_AVAILABLE = "model_not_available"
    # The plugin's own environment (its manifest's dependencies) could not be installed on the node.
    ENVIRONMENT_FAILED = "environment_failed"
    UNREADABLE_ASSET = "unreadable_asset"
    TIMEOUT = "timeout"
    WRITE_FAILED = "write_failed"
    # The plugin did something its sandbox refuses (a file, a connection, a process, a blob of
    # another namespace, a resource limit): the row fails, the worker lives on.
    SANDBOX_VIOLATION = "sandbox_violation"


class RowFailure(_Model):
    document_id: str
    object_id: str
    reason: ReasonCode
    message: str
    hint: str | None = None

    @classmethod
    def every(
        cls, rows: Iterable[tuple[str, str]], reason: ReasonCode, message: str, hint: str | None = None
    ) -> list[RowFailure]:
        """One failure per (document_id, object_id), all for one reason: the counts still reconcile."""
        return [cls(document_id=d, object_id=o, reason=reason, message=message, hint=hint) for d, o in rows]


class VectorsProduced(Event):
    """inference → indexer: the vectors of one frame (Parquet at ``vectors_uri``) and its failures."""

    org_id: str
    namespace_id: str
    batch_id: str
    frame_id: str
    collection_id: str
    plugin_id: str
    features: list[FeatureSpec]
    vectors_uri: str | None = None  # None when no row produced a vector
    vectors_sha256: str | None = None
    rows_in: int
    rows_embedded: int
    failures: list[RowFailure] = Field(default_factory=list)


class BatchIndexed(Event):
    """indexer → registry: the outcome of one frame, counts reconciled."""

    org_id: str
    namespace_id: str
    batch_id: str
    frame_id: str
    collection_id: str
    plugin_id: str
    rows_in: int
    rows_embedded: int
    rows_written: int
    failures: list[RowFailure] = Field(default_factory=list)


class BatchCancelled(Event):
    """registry → dispatcher, inference, indexer: stop a batch (``DELETE /v1/tasks/{task_id}``).

    Every instance of each service reads it (no consumer group) and remembers the id: no further
    frame is planned, run or written for the batch. Frames already running may finish. Replaying
    it changes nothing; the registry counts the rows that never ran as ``rows_cancelled``.
    """

    org_id: str
    namespace_id: str
    batch_id: str
    task_id: str = ""


# ----------------------------------------------------------------------------- collections


class VectorIndex(_Model):
    """One named vector of a collection, from a feature extractor's manifest ``features``."""

    name: str
    dimensions: int
    distance: DistanceMetric
    feature_uri: str
    plugin_id: str


class CollectionLifecycle(Event):
    """registry → indexer: a collection was created or deleted."""

    action: Literal["created", "deleted"]
    org_id: str
    namespace_id: str
    collection_id: str
    vector_indexes: list[VectorIndex] = Field(default_factory=list)
