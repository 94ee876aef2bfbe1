"""The quality bench's metrics against values worked out by hand (trec_eval's definitions)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from quality_metrics import evaluate, ndcg_at_k, recall_at_k, rrf

LOG3 = math.log2(3)


def test_ndcg_of_binary_judgments() -> None:
    # DCG = 1/log2(3) + 1/log2(4); ideal = 1/log2(2) + 1/log2(3)
    judged = {"a": 1, "b": 0, "c": 1}
    assert ndcg_at_k(["x", "a", "c", "b"], judged, 10) == pytest.approx((1 / LOG3 + 0.5) / (1 + 1 / LOG3))
    assert ndcg_at_k(["x", "a", "c", "b"], judged, 10) == pytest.approx(0.693426, abs=1e-6)
    assert ndcg_at_k(["a", "c"], judged, 10) == pytest.approx(1.0)


def test_ndcg_gains_are_the_grades_not_two_to_the_grade() -> None:
    judged = {"a": 2, "b": 1, "c": 0}
    # DCG = 1/1 + 0 + 2/log2(4) = 2; ideal = 2/1 + 1/log2(3) = 2.63093 (exponential gain would give 0.6885)
    assert ndcg_at_k(["b", "c", "a"], judged, 10) == pytest.approx(2 / (2 + 1 / LOG3))
    assert ndcg_at_k(["b", "c", "a"], judged, 10) == pytest.approx(0.760188, abs=1e-6)
    # cut at 2: DCG = 1, the ideal cut at 2 as well
    assert ndcg_at_k(["b", "c", "a"], judged, 2) == pytest.approx(0.380094, abs=1e-6)


def test_ndcg_counts_a_document_once_and_ignores_negative_grades() -> None:
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["n", "a"], {"a": 1, "n": -1}, 10) == pytest.approx(1 / LOG3)
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # nothing relevant to find


def test_recall_at_k() -> None:
    judged = {"a": 1, "b": 2, "c": 0, "d": 1}
    assert recall_at_k(["a", "c", "x", "b"], judged, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "c", "x", "b"], judged, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "a", "b"], judged, 2) == pytest.approx(2 / 3)  # a once, then b
    assert recall_at_k(["c"], {"c": 0}, 100) == 0.0


def test_evaluate_averages_over_the_judged_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}}
    run = {"q1": ["a"], "q2": ["x", "b"], "unjudged": ["a"]}  # q3 unanswered: 0
    scores = evaluate(run, qrels)
    assert scores["ndcg@10"] == pytest.approx((1 + (1 / LOG3) / (1 + 1 / LOG3) + 0) / 3)
    assert scores["recall@100"] == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="no judged queries"):
        evaluate(run, {})


def test_rrf_fuses_as_the_registry_does() -> None:
    # a 1/61; b 1/62 + 1/61; c 1/63; d 1/62
    assert rrf([["a", "b", "c"], ["b", "d"]], 10) == ["b", "a", "d", "c"]
    assert rrf([["a", "b", "c"], ["b", "d"]], 2) == ["b", "a"]
    assert rrf([["a"], ["b"]], 10) == ["a", "b"]  # a tie keeps the first seen first
