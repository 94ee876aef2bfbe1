"""The registry's settings (env prefix ``FEATUREBUS_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from featurebus.common.settings import (
    DEFAULT_INDEXER_PORT,
    DEFAULT_INFERENCE_PORT,
    DEFAULT_REGISTRY_INTERNAL_PORT,
    CommonSettings,
)

__all__ = ["RegistrySettings"]


class RegistrySettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # The internal secrets API (secrets_api.py) inference's workers call for a plugin's granted
    # secrets: a listener of its own, loopback by default; every request needs FEATUREBUS_INTERNAL_TOKEN.
    registry_internal_host: str = "127.0.0.1"
    registry_internal_port: int = DEFAULT_REGISTRY_INTERNAL_PORT
    # The first admin key of a fresh install; generated into DATA_DIR/admin-api-key when unset.
    admin_api_key: str | None = None
    # Fernet key for organization secrets; generated into DATA_DIR/secrets.key when unset.
    secrets_key: str | None = None
    # The internal APIs a retriever execution calls (query_services.py): inference embeds the
    # query texts, the indexer searches. Both need FEATUREBUS_INTERNAL_TOKEN.
    inference_url: str = f"http://127.0.0.1:{DEFAULT_INFERENCE_PORT}"
    indexer_url: str = f"http://127.0.0.1:{DEFAULT_INDEXER_PORT}"
    # How long a retriever execution waits for each of them (a service that is starting is waited for).
    retrieval_timeout_s: float = 30.0
    # How long an LLM stage waits for its calls (all results' together; inference bounds how many
    # run at once with FEATUREBUS_LLM_MAX_CONCURRENCY).
    llm_stage_timeout_s: float = Field(default=120.0, gt=0)
    # The records every request reads (keys, namespaces) and a retriever execution reads
    # (retrievers, plugins, collections) are kept in memory this long (tables.RecentReads): this
    # registry's own writes are seen at once, a second replica's within this time; 0 reads each time.
    read_cache_s: float = Field(default=1.0, ge=0)
    # Each retriever keeps this many of its most recent executions (GET .../executions); 0 keeps none.
    retriever_history: int = Field(default=100, ge=0, le=10_000)
    presigned_url_ttl_s: int = 3600
    max_archive_bytes: int = 500 * 1024 * 1024
    # Inline text larger than this is refused (Kafka messages stay under 1 MiB).
    max_inline_text_bytes: int = 256 * 1024
    # Binary blobs (images, audio, video, PDF) uploaded through presigned URLs are refused above
    # this: a plugin's download_asset reads an asset whole into a worker (actor_memory_gb is 2 by
    # default), and frames of such assets should stay within a worker's memory.
    max_blob_bytes: int = 256 * 1024 * 1024
    # An image/audio query's bytes sent inside the execute request (base64); larger ones are
    # uploaded first and named by upload_id.
    max_query_blob_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # Every request body (all are JSON) is refused with a 413 above this; files never pass through
    # the registry (they go to presigned URLs), and 1,000 objects of 16 KiB fit in one request.
    max_request_bytes: int = 16 * 1024 * 1024
    # A model (POST /v1/models, /v1/namespaces/{ns}/models) is refused when its files add up to
    # more than this; its bytes go to presigned URLs, never through the registry's requests.
    max_model_bytes: int = 20 * 1024**3
    # Cluster models fetched from a model hub on first use (README, Models): off by default (workers
    # then load only imported models). The hub's address (a Hugging Face endpoint or a mirror), a
    # token for gated or private repos, how long one download may take, and how long a failed
    # download is answered as failed before it is tried again.
    model_hub: bool = False
    model_hub_endpoint: str = "https://huggingface.co"
    model_hub_token: SecretStr | None = None
    model_hub_timeout_s: float = Field(default=1800.0, gt=0)
    model_hub_retry_s: float = Field(default=300.0, ge=0)
