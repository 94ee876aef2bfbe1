"""The child's answer to queries as the supervisor reads it: vectors as float64s in the body,
believed only when the lengths in the header account for exactly the body's floats."""

from __future__ import annotations

import array

import pytest

from featurebus.common.events import ReasonCode
from featurebus.inference.sandbox.supervisor import _embedded
from featurebus.runtime import PluginError


def _body(*vectors: list[float]) -> bytes:
    return b"".join(array.array("d", v).tobytes() for v in vectors)


def test_vectors_come_back_exactly_in_order_and_errors_stay_per_query() -> None:
    first, second = [0.1, -2.5, 1e-30], [3.0]
    results = [
        {"vectors": {"a": 3, "b": 1}},
        {"error": {"reason": "plugin_exception", "message": "boom", "hint": "fix it"}},
        {"vectors": {"a": 1}},
    ]
    answers = _embedded(results, _body(first, second, [7.25]))
    assert answers[0] == {"a": first, "b": second}
    assert isinstance(answers[1], PluginError)
    assert (answers[1].reason, answers[1].message, answers[1].hint) == (ReasonCode.PLUGIN_EXCEPTION, "boom", "fix it")
    assert answers[2] == {"a": [7.25]}


def test_an_unknown_reason_is_a_plugin_exception() -> None:
    [answer] = _embedded([{"error": {"reason": "made_up", "message": "m", "hint": 3}}], b"")
    assert isinstance(answer, PluginError)
    assert (answer.reason, answer.hint) == (ReasonCode.PLUGIN_EXCEPTION, None)


@pytest.mark.parametrize(
    ("results", "body"),
    [
        ([{"vectors": {"a": 2}}], _body([1.0])),  # fewer floats than the lengths say
        ([{"vectors": {"a": 1}}], _body([1.0, 2.0])),  # more
        ([{"vectors": {"a": 1}}], _body([1.0]) + b"x"),  # not whole floats
        ([{"vectors": {"a": -1}}], _body([1.0])),
        ([{"vectors": {"a": "1"}}], _body([1.0])),
        ([{"vectors": {"a": True}}], _body([1.0])),
        ([{"vectors": [1.0]}], b""),
        (["nothing"], b""),
    ],
)
def test_an_answer_that_does_not_add_up_is_refused(results: list[object], body: bytes) -> None:
    with pytest.raises(PluginError) as refused:
        _embedded(results, body)
    assert refused.value.reason is ReasonCode.PLUGIN_EXCEPTION
