"""The internal query APIs of inference and the indexer, on the running platform: loopback only,
and nothing without the service token (the REST API key is not it)."""

from __future__ import annotations

import httpx
import pytest

from featurebus.common.events import PluginRef
from featurebus.common.queries import (
    EMBED_PATH,
    SEARCH_PATH,
    EmbedRequest,
    QueryText,
    SearchRequest,
    VectorSearch,
)

pytestmark = pytest.mark.e2e

PLUGIN = PluginRef(
    plugin_id="p_1_0_0",
    name="p",
    version="1.0.0",
    archive_uri="s3://featurebus/plugins/nobody/p.zip",
    archive_sha256="0" * 64,
)
REQUESTS = {
    "inference": (EMBED_PATH, EmbedRequest(request_id="e2e", namespace_id="ns_nobody", queries=[])),
    "indexer": (
        SEARCH_PATH,
        SearchRequest(
            request_id="e2e",
            namespace_id="ns_nobody",
            searches=[VectorSearch(feature_name="v", collection_ids=["col_nobody"], vector=[1.0])],
        ),
    ),
}


def url(platform, service: str) -> str:  # type: ignore[no-untyped-def]
    return platform.services.inference_url if service == "inference" else platform.services.indexer_url


@pytest.mark.parametrize("service", ["inference", "indexer"])
def test_an_internal_api_refuses_a_request_without_the_service_token(platform, service: str) -> None:  # type: ignore[no-untyped-def]
    path, request = REQUESTS[service]
    body = request.model_dump_json()
    headers = {"Content-Type": "application/json"}
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {platform.admin_key}"}):
        refused = httpx.post(url(platform, service) + path, content=body, headers=headers | auth, timeout=10)
        assert refused.status_code == 401, (service, auth, refused.text)
        assert "FEATUREBUS_INTERNAL_TOKEN" in refused.json()["detail"]
    for docs in ("/docs", "/openapi.json"):
        assert httpx.get(url(platform, service) + docs, timeout=10).status_code == 401


def test_with_the_token_the_apis_answer_and_say_what_they_cannot_do(platform) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {platform.services.token}"}
    path, request = REQUESTS["indexer"]
    search = httpx.post(platform.services.indexer_url + path, content=request.model_dump_json(), headers=headers)
    assert search.status_code == 422 and "collection col_nobody does not exist" in search.json()["detail"]
    path, _ = REQUESTS["inference"]
    missing = EmbedRequest(
        request_id="e2e", namespace_id="ns_nobody", queries=[QueryText(plugin=PLUGIN, feature_name="v", text="q")]
    )
    embed = httpx.post(platform.services.inference_url + path, content=missing.model_dump_json(), headers=headers)
    assert embed.status_code == 422 and "p_1_0_0 could not embed the query" in embed.json()["detail"]
    assert platform.services.inference_url.startswith("http://127.0.0.1:")
    assert platform.services.indexer_url.startswith("http://127.0.0.1:")


def test_the_token_file_is_private(platform) -> None:  # type: ignore[no-untyped-def]
    path = platform.services.data_dir / "internal-token"
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == platform.services.token
