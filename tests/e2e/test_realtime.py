"""Real-time plugins on the real stack: the guide's Quick Start deployed with the plain deploy,
its infer endpoint, retriever queries through realtime.py, a blue-green rollout with queries
running throughout, an automatic rollback, and the lifecycle (undeploy, delete, disable/enable)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUICKSTART = EXAMPLES / "my_extractor"
FEATURE_URI = "mixpeek://my_extractor@1.0.0/my_embedding"
DOCS = [
    "Penguins are flightless seabirds that live in Antarctica.",
    "The stock market fell sharply as investors sold shares.",
    "A recipe for bread needs flour, water, salt and yeast.",
]
# A query encoder that differs from the batch steps: whatever is asked, it embeds the penguin text.
FIXED_QUERY_REALTIME = (
    (QUICKSTART / "realtime.py").read_text().replace('text = inputs.get("text", "")', f'text = "query: " + {DOCS[0]!r}')
)
DEPLOY_TIMEOUT = 300


def quickstart(version: str = "1.0.0", realtime: str | None = None) -> bytes:
    manifest = (QUICKSTART / "manifest.py").read_text().replace('"version": "1.0.0"', f'"version": "{version}"')
    overrides = {"manifest.py": manifest}
    if realtime is not None:
        overrides["realtime.py"] = realtime
    return zip_plugin(QUICKSTART, overrides)


def upload(platform: Any, ns: str, archive: bytes, version: str = "1.0.0") -> str:
    """Upload, PUT and confirm as the guide's curl lines do; the plugin id (the scan is still running)."""
    http = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {platform.admin_key}"})
    up = http.post(f"/v1/namespaces/{ns}/plugins/uploads", json={"name": "my_extractor", "version": version})
    assert up.status_code == 201, up.text
    assert httpx.put(up.json()["presigned_url"], content=archive).status_code == 200
    assert http.post(f"/v1/namespaces/{ns}/plugins/uploads/{up.json()['upload_id']}/confirm").status_code == 200
    return str(up.json()["plugin_id"])


def deploy(api: Api, ns: str, plugin_id: str) -> dict[str, Any]:
    return dict(api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy", expect=(200, 202)))


def settled(api: Api, ns: str, plugin_id: str) -> dict[str, Any]:
    """The status once no deploy or rollout is under way."""
    return dict(
        api.wait(
            lambda: api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"),
            lambda s: s["status"] not in ("QUEUED", "PENDING", "IN_PROGRESS") and not s["rollout_in_progress"],
            timeout=DEPLOY_TIMEOUT,
            every=1,
        )
    )


def infer(api: Api, ns: str, plugin: str, text: str, expect: int | tuple[int, ...] = 200) -> dict[str, Any]:
    return dict(
        api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin}/infer", expect, json={"inputs": {"text": text}})
    )


def indexed_collection(api: Api, ns: str, plugin_id: str) -> str:
    bucket = api.text_bucket(ns, f"b-{uuid.uuid4().hex[:6]}", DOCS)
    collection = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": f"c-{uuid.uuid4().hex[:6]}",
            "feature_extractors": [{"feature_extractor_name": "my_extractor", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    batch = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [collection]}
    )["batch_id"]
    assert api.wait_batch(ns, bucket, batch)["status"] == "COMPLETED"
    return str(collection)


def top_hit(api: Api, ns: str, collection: str, query: str) -> str:
    retriever = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={
            "name": f"r-{uuid.uuid4().hex[:6]}",
            "collection_identifiers": [collection],
            "stages": [
                {
                    "stage_name": "search",
                    "stage_type": "filter",
                    "config": {
                        "stage_id": "feature_search",
                        "parameters": {"searches": [{"feature_uri": FEATURE_URI, "query": "{{INPUT.q}}"}]},
                    },
                }
            ],
        },
    )["retriever_id"]
    try:
        results = api.call("POST", f"/v1/namespaces/{ns}/retrievers/{retriever}/execute", json={"input": {"q": query}})
    finally:
        api.call("DELETE", f"/v1/namespaces/{ns}/retrievers/{retriever}")
    return str(results["results"][0]["text"])


def test_the_quick_start_deployed_with_the_plain_deploy_answers_and_serves_queries(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"rt-{uuid.uuid4().hex[:6]}")
    plugin_id = upload(platform, ns, quickstart())
    accepted = deploy(api, ns, plugin_id)  # right after confirm, as Mixpeek's quickstart does
    assert accepted["status"] == "PENDING", accepted
    status = settled(api, ns, plugin_id)
    assert (status["status"], status["realtime_enabled"], status["replicas_ready"]) == ("DEPLOYED", True, 1), status
    assert status["route_prefix"] == f"/v1/namespaces/{status['namespace_id']}/plugins/{plugin_id}/infer"
    for plugin in (plugin_id, "my_extractor"):  # by version id, and by name (the serving version)
        answer = infer(api, ns, plugin, "a long enough sentence to be called positive by the toy sentiment")
        assert answer["plugin_id"] == plugin_id and len(answer["output"]["embedding"]) == 384
        assert answer["output"]["sentiment"] == "positive"
    collection = indexed_collection(api, ns, plugin_id)
    assert top_hit(api, ns, collection, "birds of the south pole") == DOCS[0]
    assert top_hit(api, ns, collection, "shares and investors") == DOCS[1]


def test_a_query_encoder_that_differs_from_the_batch_steps_is_the_one_searched_with_also_after_a_restart(
    platform, api: Api
) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"rtq-{uuid.uuid4().hex[:6]}")
    plugin_id = upload(platform, ns, quickstart(realtime=FIXED_QUERY_REALTIME))
    deploy(api, ns, plugin_id)
    assert settled(api, ns, plugin_id)["status"] == "DEPLOYED"
    collection = indexed_collection(api, ns, plugin_id)
    # Through the batch steps this query finds the stock-market text; realtime.py embeds the penguins.
    assert top_hit(api, ns, collection, "shares and investors") == DOCS[0]
    # A restart of inference stops its Ray, and the deployment with it: inference starts it again,
    # and queries wait for it rather than being embedded by the batch steps meanwhile.
    platform.restart("inference")
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    while True:
        try:
            hit = top_hit(api, ns, collection, "shares and investors")
            break
        except AssertionError:  # inference not back yet (the registry answers 503/504)
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert hit == DOCS[0]
    assert "restored (1 of 1 replicas ready)" in platform.log("inference")
    status = api.wait(
        lambda: api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"),
        lambda s: s["replicas_ready"] == 1,
        timeout=30,
    )
    assert (status["status"], status["error"]) == ("DEPLOYED", None), status
    assert infer(api, ns, plugin_id, "hi")["output"]["embedding"]


class Queries:
    """Infer calls by plugin name in a loop on a thread, recording every answer and failure."""

    def __init__(self, api: Api, ns: str) -> None:
        self.api, self.ns = api, ns
        self.answers: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Queries:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        http = self.api.http
        while not self._stop.is_set():
            r = http.post(f"/v1/namespaces/{self.ns}/plugins/my_extractor/infer", json={"inputs": {"text": "hi"}})
            if r.status_code == 200:
                self.answers.append(r.json())
            else:
                self.failures.append(f"{r.status_code}: {r.text[:300]}")
            time.sleep(0.05)


def test_blue_green_switches_with_no_failed_query_and_a_broken_version_rolls_back(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"bg-{uuid.uuid4().hex[:6]}")
    v1 = upload(platform, ns, quickstart("1.0.0"))
    deploy(api, ns, v1)
    first = settled(api, ns, v1)
    assert first["status"] == "DEPLOYED", first
    marked = (
        (QUICKSTART / "realtime.py").read_text().replace('return {"embedding"', 'return {"version": 2, "embedding"')
    )
    assert marked != (QUICKSTART / "realtime.py").read_text()
    broken = (QUICKSTART / "realtime.py").read_text().replace('"embedding": embedding', '"embedding": embedding[:10]')
    with Queries(api, ns) as queries:
        v2 = upload(platform, ns, quickstart("2.0.0", marked), "2.0.0")
        deploy(api, ns, v2)
        assert settled(api, ns, v2)["status"] == "DEPLOYED"
        api.wait(lambda: queries.answers[-1], lambda a: a["plugin_id"] == v2, timeout=60)
        old = api.call("GET", f"/v1/namespaces/{ns}/plugins/{v1}/status")
        assert (old["status"], old["realtime_enabled"]) == ("NOT_DEPLOYED", False), old
        v3 = upload(platform, ns, quickstart("3.0.0", broken), "3.0.0")
        deploy(api, ns, v3)
        failed = settled(api, ns, v3)
        time.sleep(2)  # queries go on after the rollback
    assert queries.failures == [], queries.failures[:5]
    served = [a["plugin_id"] for a in queries.answers]
    first_v2 = served.index(v2)
    assert set(served[:first_v2]) == {v1} and set(served[first_v2:]) == {v2}, "traffic switched once, to v2"
    assert all(a["output"].get("version") == 2 for a in queries.answers[first_v2:])
    assert failed["status"] == "FAILED" and "384" in failed["error"] and "10" in failed["error"], failed
    assert infer(api, ns, "my_extractor", "still there")["plugin_id"] == v2


def test_undeploy_delete_disable_and_a_deploy_of_a_plugin_whose_scan_fails(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"life-{uuid.uuid4().hex[:6]}")
    plugin_id = upload(platform, ns, quickstart())
    deploy(api, ns, plugin_id)
    assert settled(api, ns, plugin_id)["status"] == "DEPLOYED"
    collection = indexed_collection(api, ns, plugin_id)
    refused = api.call("DELETE", f"/v1/namespaces/{ns}/plugins/{plugin_id}", expect=409)
    assert collection in refused["detail"]
    api.call("POST", f"/v1/namespaces/{ns}/plugins/org/{plugin_id}/disable")
    assert "disabled" in infer(api, ns, plugin_id, "q", expect=409)["detail"]
    api.call("POST", f"/v1/namespaces/{ns}/plugins/org/{plugin_id}/enable")
    assert len(infer(api, ns, plugin_id, "q")["output"]["embedding"]) == 384
    undeployed = api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/undeploy")
    assert undeployed["status"] == "NOT_DEPLOYED"
    assert "not deployed for real time" in infer(api, ns, plugin_id, "q", expect=409)["detail"]
    # queries fall back to the batch steps, whose actors start again on demand
    assert top_hit(api, ns, collection, "birds of the south pole") == DOCS[0]
    api.call("DELETE", f"/v1/namespaces/{ns}/collections/{collection}")
    api.call("DELETE", f"/v1/namespaces/{ns}/plugins/{plugin_id}")
    api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status", expect=404)
    hostile = quickstart("9.0.0", "import subprocess\n" + (QUICKSTART / "realtime.py").read_text())
    bad = upload(platform, ns, hostile, "9.0.0")
    assert deploy(api, ns, bad)["status"] == "PENDING"
    failed = settled(api, ns, bad)
    assert failed["status"] == "FAILED" and "subprocess" in failed["error"], failed
