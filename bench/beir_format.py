"""Reading a test collection in BEIR's layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

``corpus.jsonl`` holds ``{"_id", "title", "text"}`` lines, ``queries.jsonl`` ``{"_id", "text"}``
lines, and the qrels a header then ``query-id<TAB>corpus-id<TAB>score`` rows (graded, 0 judged
not relevant). Only the queries that have judgments are kept, as BEIR's loader keeps them; a
judged document missing from the corpus stays judged (it counts against recall, as in BEIR).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Collection", "load_collection"]


@dataclass(frozen=True)
class Collection:
    name: str
    corpus: dict[str, tuple[str, str]]  # id → (title, text), in file order
    queries: dict[str, str]  # id → text, judged ones only, in file order
    qrels: dict[str, dict[str, int]]  # query id → document id → grade

    def first_queries(self, n: int | None) -> Collection:
        """The same collection judged on its first ``n`` queries only (all when None)."""
        if n is None or n >= len(self.queries):
            return self
        kept = list(self.queries)[:n]
        return Collection(self.name, self.corpus, {q: self.queries[q] for q in kept}, {q: self.qrels[q] for q in kept})

    def document_text(self, doc_id: str) -> str:
        """What is embedded for a document: its title and text, as BEIR's dense models join them."""
        title, text = self.corpus[doc_id]
        return f"{title} {text}".strip()


def _jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_collection(directory: Path, split: str = "test") -> Collection:
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for path in (directory / "corpus.jsonl", directory / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a BEIR collection has corpus.jsonl, queries.jsonl, qrels/")
    corpus = {
        str(d["_id"]): (str(d.get("title") or ""), str(d.get("text") or "")) for d in _jsonl(directory / "corpus.jsonl")
    }
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)  # the header
        for query_id, doc_id, grade in rows:
            qrels.setdefault(query_id, {})[doc_id] = int(grade)
    queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(directory / "queries.jsonl") if str(q["_id"]) in qrels}
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{qrels_path}: judged queries {missing[:5]} are not in queries.jsonl")
    return Collection(directory.name, corpus, queries, qrels)
