"""The quality bench's default collection, ``bench/data/featurebus_mini``, as its loader reads it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from beir_format import load_collection  # noqa: E402  (bench/ is not a package)

DATA = ROOT / "bench" / "data" / "featurebus_mini"


def test_the_default_collection_loads_whole() -> None:
    collection = load_collection(DATA)
    assert collection.name == "featurebus_mini"
    assert len(collection.corpus) == 120
    assert len(collection.queries) == 30
    assert all(title and text for title, text in collection.corpus.values())
    assert len({doc_id.split("-")[0] for doc_id in collection.corpus}) == 12


def test_every_query_has_an_answer_and_every_judgment_a_passage() -> None:
    collection = load_collection(DATA)
    assert set(collection.qrels) == set(collection.queries)
    for judged in collection.qrels.values():
        assert set(judged) <= set(collection.corpus)
        assert set(judged.values()) <= {0, 1, 2}
        assert 2 in judged.values()
        assert 1 <= sum(grade > 0 for grade in judged.values()) <= 4


def test_the_first_queries_subset() -> None:
    subset = load_collection(DATA).first_queries(5)
    assert list(subset.queries) == ["q01", "q02", "q03", "q04", "q05"]
    assert set(subset.qrels) == set(subset.queries)
    assert subset.document_text("peng-01").startswith("Emperor penguins: the winter egg ")
