"""LLM stages of retrievers: one call of the operator's LLM provider per result, concurrently.

``POST /internal/v1/enrich`` (:class:`~featurebus.common.queries.EnrichRequest`) sends each item
(a result's filled-in prompt and images) through the same :class:`LLMGateway` that plugins'
``container.llm`` reach: the provider's key stays in this process, at most
``FEATUREBUS_LLM_MAX_CONCURRENCY`` calls are in flight, transport errors, 429 and 5xx are retried.
An item whose call fails gets its error and hint; the others their answer, so that one refusal
never costs the rest. Without a provider the whole request is refused, naming the settings.

An ``s3://`` image is read from the object store only when it is a blob of the request's
namespace (``blobs/<org>/<namespace>/...``, the registry's layout of verified uploads): a result's
payload is written by plugin code, which must not make the platform read another tenant's blob.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from featurebus.common.objectstore import ObjectStore
from featurebus.common.queries import EnrichItem, EnrichRequest, EnrichResponse, EnrichResult
from featurebus.inference.plugin_access import LLMGateway, LLMSettings
from featurebus.sdk.container import LLMError

__all__ = ["MAX_ITEMS", "EnrichFailed", "Enricher"]

log = logging.getLogger("featurebus.inference.enrichment")

MAX_ITEMS = 200  # results one LLM stage may send
READ_TIMEOUT_S = 30.0
SETTINGS_HINT = "the operator sets FEATUREBUS_LLM_BASE_URL (and FEATUREBUS_LLM_API_KEY) on the inference service"


class EnrichFailed(Exception):
    """The request as a whole cannot be served (no provider, too many items)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class Enricher:
    """Answers :class:`EnrichRequest`s through one gateway; ``close`` ends its threads and client."""

    def __init__(self, settings: LLMSettings, store: ObjectStore) -> None:
        self.settings, self.store = settings, store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gateway = LLMGateway(settings, fetch=self._read)
        self._threads = ThreadPoolExecutor(max_workers=max(1, settings.max_concurrency), thread_name_prefix="enrich")

    async def enrich(self, request: EnrichRequest) -> EnrichResponse:
        if not self.settings.configured:
            raise EnrichFailed("no LLM provider is configured on this featurebus installation", SETTINGS_HINT)
        if len(request.items) > MAX_ITEMS:
            raise EnrichFailed(
                f"{len(request.items)} results to send to the LLM; at most {MAX_ITEMS}",
                "put a limit stage (or top_n) before the LLM stage",
            )
        self._loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(self._one(request, item) for item in request.items))
        failed = sum(1 for r in results if r.error is not None)
        if failed:
            log.warning("request=%s: %d of %d LLM calls failed", request.request_id, failed, len(results))
        return EnrichResponse(results=list(results))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._gateway.close()

    async def _one(self, request: EnrichRequest, item: EnrichItem) -> EnrichResult:
        foreign = next((uri for uri in item.images if not self._readable(uri, request.namespace_id)), None)
        if foreign is not None:
            return EnrichResult(
                error=f"the image {foreign[:200]!r} is not a blob of this namespace, so it was not sent",
                hint="name a field holding the namespace's own blob URLs (or http(s):// / data: URLs)",
            )
        call: dict[str, Any] = {
            "instruction": request.instruction,
            "text": item.text,
            "images": item.images,
            "model": request.model,
            "schema": request.output_schema,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._threads, self._gateway.call, call)
        except LLMError as err:
            return EnrichResult(error=err.message, hint=err.hint)
        return EnrichResult(text=answer.get("text"), data=answer.get("data"))

    def _readable(self, uri: str, namespace_id: str) -> bool:
        """Whether ``uri`` may be sent: not an ``s3://`` URL, or a verified blob of ``namespace_id``."""
        if not uri.startswith("s3://"):
            return True
        own = self.store.uri("blobs/")
        parts = uri.removeprefix(own).split("/") if uri.startswith(own) else []
        return len(parts) > 2 and parts[1] == namespace_id and "" not in parts and ".." not in parts

    def _read(self, uri: str) -> bytes:
        """A blob's bytes, for the gateway's thread (the store is the service loop's)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self.store.get_bytes(uri), self._loop).result(READ_TIMEOUT_S)
