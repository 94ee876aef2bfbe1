"""The batch linter flags the guide's anti-patterns with line numbers, and not the batched patterns."""

from __future__ import annotations

from featurebus.scan.batch_lint import lint_source

SEQUENTIAL = b"""
class P:
    def __call__(self, batch):
        for idx, row in batch.iterrows():
            inputs = self._tokenizer(row["data"], return_tensors="pt")
            embedding = self._model.encode(row["data"])
            batch.at[idx, "embedding"] = embedding
        for i in range(len(batch)):
            r = requests.get(batch["data"][i])
        return batch
"""

BATCHED = b"""
class P:
    def __call__(self, batch):
        texts = batch["data"].fillna("").tolist()
        batch["embedding"] = self._model.encode(texts, batch_size=32).tolist()
        for name in ["a", "b"]:
            batch[name] = 1
        return batch
"""


def test_sequential_patterns_are_flagged_with_lines() -> None:
    found = [(v.code, v.line) for v in lint_source("processors/core.py", SEQUENTIAL)]
    assert ("SEQ001", 4) in found and ("SEQ003", 5) in found and ("SEQ002", 6) in found
    assert ("SEQ001", 8) in found and ("SEQ002", 9) in found
    assert all(v.severity == "WARNING" for v in lint_source("x.py", SEQUENTIAL))


def test_batched_patterns_are_clean() -> None:
    assert lint_source("processors/core.py", BATCHED) == []
