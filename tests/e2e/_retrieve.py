"""Every document of a collection, through a retriever (how the e2e tests count what was indexed)."""

from __future__ import annotations

import uuid
from typing import Any

from ._client import Api

__all__ = ["all_document_ids", "search_everything"]


def all_document_ids(api: Api, ns: str, collection: str, feature_uri: str, query: str) -> list[str]:
    """The document ids a search over the whole collection returns (up to 1,000), duplicates kept."""
    return [r["document_id"] for r in search_everything(api, ns, collection, feature_uri, query)]


def search_everything(api: Api, ns: str, collection: str, feature_uri: str, query: str) -> list[dict[str, Any]]:
    """The results (payload included) of a search over the whole collection, up to 1,000."""
    retriever = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={
            "name": f"all-{uuid.uuid4().hex[:6]}",
            "collection_identifiers": [collection],
            "stages": [
                {
                    "stage_name": "search",
                    "stage_type": "filter",
                    "config": {
                        "stage_id": "feature_search",
                        "parameters": {
                            "searches": [{"feature_uri": feature_uri, "query": "{{INPUT.q}}", "top_k": 1000}],
                            "final_top_k": 1000,
                        },
                    },
                }
            ],
        },
    )["retriever_id"]
    body = {"input": {"q": query}}
    return list(api.call("POST", f"/v1/namespaces/{ns}/retrievers/{retriever}/execute", json=body)["results"])
