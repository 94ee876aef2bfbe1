"""Payloads of the synchronous query path: the internal HTTP APIs of inference and the indexer.

A retriever execution is a direct call, not an event (DESIGN.md §1): the registry asks inference
to embed the query texts (``POST /internal/v1/embed``: :class:`EmbedRequest` →
:class:`EmbedResponse`), then asks the indexer to search with the vectors
(``POST /internal/v1/search``: :class:`SearchRequest` → :class:`SearchResponse`), and, for a
rerank stage, asks inference to score the candidates (``POST /internal/v1/rerank``:
:class:`RerankRequest` → :class:`RerankResponse`), and, for an LLM stage, asks inference to
call the operator's LLM provider for each result (``POST /internal/v1/enrich``:
:class:`EnrichRequest` → :class:`EnrichResponse`). A plugin's
infer endpoint is a direct call too (``POST /internal/v1/infer``: :class:`InferRequest` →
:class:`InferResponse`). Inference asks the registry for a plugin's granted secrets before its
workers start (``POST /internal/v1/secrets``: :class:`SecretsRequest` → :class:`SecretsResponse`,
on the registry's internal listener). All three services refuse a
request without ``Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>`` (401) and answer a request
they cannot serve with :class:`QueryRefusal` (422). The same rules as events apply: changes are
additive and unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from featurebus.common.events import PluginRef

__all__ = [
    "BUILTIN_RERANKERS",
    "EMBED_PATH",
    "ENRICH_PATH",
    "INFER_PATH",
    "MODEL_FETCH_PATH",
    "RERANK_PATH",
    "SEARCH_PATH",
    "SECRETS_PATH",
    "EmbedRequest",
    "EmbedResponse",
    "EnrichItem",
    "EnrichRequest",
    "EnrichResponse",
    "EnrichResult",
    "InferRequest",
    "InferResponse",
    "LikeDocument",
    "ModelFetchRequest",
    "ModelFetchResponse",
    "QueryBlob",
    "QueryRefusal",
    "QueryText",
    "RerankRequest",
    "RerankResponse",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "SecretsRequest",
    "SecretsResponse",
    "VectorSearch",
]

EMBED_PATH = "/internal/v1/embed"
INFER_PATH = "/internal/v1/infer"
SEARCH_PATH = "/internal/v1/search"
SECRETS_PATH = "/internal/v1/secrets"
MODEL_FETCH_PATH = "/internal/v1/models/fetch"
RERANK_PATH = "/internal/v1/rerank"
ENRICH_PATH = "/internal/v1/enrich"

# Rerankers installed with the platform, by the name a rerank stage gives (beside them: the
# cross-encoders of the model registry, by repo id). E5 re-scores by the cosine of its query and
# passage embeddings.
BUILTIN_RERANKERS = ("intfloat/multilingual-e5-small",)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class QueryBlob(_Model):
    """An image, audio or video query: a blob in the object store, given to the plugin as a row
    like an object's blob (``data`` the ``s3://`` URL), so that its batch steps embed it as they
    embed stored ones."""

    uri: str
    mime_type: str
    blob_type: str  # image, audio, video or document
    size_bytes: int

    def row(self) -> dict[str, Any]:
        """The row fields the plugin gets (featurebus.runtime.queries.Query)."""
        return {
            "data": self.uri,
            "mime_type": self.mime_type,
            "blob_type": self.blob_type,
            "size_bytes": self.size_bytes,
        }


class QueryText(_Model):
    """One query of a ``feature_search``, to be embedded by the plugin that made the feature: a
    text, or a blob (then ``text`` is empty)."""

    plugin: PluginRef
    feature_name: str
    text: str
    blob: QueryBlob | None = None
    # The plugin's real-time deployment, which embeds the text with its realtime.py; None (or a
    # deployment that is gone): the plugin's warm batch actors, through its batch steps.
    deployment: str | None = None


class EmbedRequest(_Model):
    """registry → inference: embed each query with its plugin, in the namespace's own workers."""

    request_id: str
    namespace_id: str
    queries: list[QueryText]


class EmbedResponse(_Model):
    """inference → registry: one vector per query, in the order of the request."""

    vectors: list[list[float]]


class LikeDocument(_Model):
    """A stored document whose vector is the query ("more like this"); it is left out of the hits."""

    document_id: str
    plugin_id: str  # whose vector of the document: the feature's plugin
    collection_id: str | None = None  # where it is stored; None: the first of the search's collections having it


class VectorSearch(_Model):
    """One ``feature_search`` with its query: a vector, or a stored document's (``like``); the named
    vector of each collection."""

    feature_name: str
    collection_ids: list[str]
    vector: list[float] = Field(default_factory=list)
    like: LikeDocument | None = None


class SearchRequest(_Model):
    """registry → indexer: search every collection of each search by its named vector."""

    request_id: str
    namespace_id: str
    searches: list[VectorSearch]
    limit: int = 10
    # Equality filters on payload fields, e.g. {"blob_property": "text"}.
    filters: dict[str, Any] = Field(default_factory=dict)
    # Filters in the filter language (featurebus.common.filters), all of which must hold.
    where: list[dict[str, Any]] = Field(default_factory=list)
    # Each hit with the vector it was found by (SearchHit.vectors).
    with_vectors: bool = False


class InferRequest(_Model):
    """registry → inference: one request to a real-time deployment (``InferenceService.__call__``)."""

    namespace_id: str
    deployment: str
    inputs: dict[str, Any]
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferResponse(_Model):
    """inference → registry: what realtime.py answered."""

    output: dict[str, Any]


class RerankRequest(_Model):
    """registry → inference: score each document against the query with ``model`` (a builtin
    reranker or a cross-encoder of the model registry)."""

    request_id: str
    namespace_id: str
    model: str
    query: str
    documents: list[str]


class RerankResponse(_Model):
    """inference → registry: one score per document, in order (higher is more relevant)."""

    scores: list[float]


class EnrichItem(_Model):
    """One result's call: the prompt filled in with its fields, and the images sent with it."""

    text: str
    images: list[str] = Field(default_factory=list)  # http(s)://, data: or s3:// URLs of the namespace's blobs


class EnrichRequest(_Model):
    """registry → inference: one LLM call per item (concurrently, bounded), with the stage's
    instruction, model (None: the operator's default) and output schema (None: free text)."""

    request_id: str
    namespace_id: str
    items: list[EnrichItem]
    instruction: str | None = None
    model: str | None = None
    output_schema: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class EnrichResult(_Model):
    """One item's answer (``text``; ``data``, the parsed JSON object, with an output schema) or
    why there is none (``error`` and ``hint``: the provider refused, timed out, answered no JSON)."""

    text: str | None = None
    data: Any = None
    error: str | None = None
    hint: str | None = None


class EnrichResponse(_Model):
    """inference → registry: one result per item, in order."""

    results: list[EnrichResult]


class SearchHit(_Model):
    document_id: str
    collection_id: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)
    # Beside ``score`` once a rerank stage re-scored the hit: the search's (fused) score it had.
    search_score: float | None = None
    # With ``SearchRequest.with_vectors``: the named vectors it was found by.
    vectors: dict[str, list[float]] | None = None
    # What a stage could not do for this hit (an LLM call that failed): its index, id, error, hint.
    stage_errors: list[dict[str, Any]] = Field(default_factory=list)


class SearchResponse(_Model):
    """indexer → registry: hits per search (in the order of the request), best first."""

    hits: list[list[SearchHit]]


class QueryRefusal(_Model):
    """The body of a 422 from either API: what could not be done (plugin, collection, vector) and the fix."""

    detail: str
    hint: str | None = None


class SecretsRequest(_Model):
    """inference → registry: the plugin whose worker starts, and the namespace it runs in."""

    namespace_id: str = Field(max_length=200)
    plugin_id: str = Field(max_length=200)


class SecretsResponse(_Model):
    """registry → inference: name → decrypted value, only for granted secrets that exist."""

    secrets: dict[str, str]


class ModelFetchRequest(_Model):
    """inference → registry: a cluster model a plugin names that the model registry lacks."""

    name: str = Field(max_length=200)


class ModelFetchResponse(_Model):
    """registry → inference: ``ready`` (its manifest is stored), ``fetching`` (ask again later),
    ``failed`` (the hub refused or has no safe weights: ``error``), or ``unavailable`` (no hub)."""

    status: Literal["ready", "fetching", "failed", "unavailable"]
    error: str | None = None
