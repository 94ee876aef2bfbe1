"""The Prometheus series: frame counts, failures by reason, Kafka gauges over a twin, /metrics serving."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.common.http_observing import ObservedRequests
from featurebus.common.internal_api import ServiceTokenGuard
from featurebus.common.metrics import KafkaGauges, MetricsEndpoint, Partition, count_frame, new_failures


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def failure(document_id: str, reason: ReasonCode) -> RowFailure:
    return RowFailure(document_id=document_id, object_id="o", reason=reason, message="m")


def test_a_frame_counts_its_rows_and_its_failures_by_reason() -> None:
    before = {
        "frames": value("featurebus_frames_processed_total", service="t-count"),
        "rows": value("featurebus_rows_processed_total", service="t-count"),
        "written": value("featurebus_rows_written_total", service="t-count"),
        "null": value("featurebus_rows_failed_total", service="t-count", reason="null_output"),
    }
    failures = [failure("d1", ReasonCode.NULL_OUTPUT), failure("d2", ReasonCode.NULL_OUTPUT)]
    count_frame("t-count", 5, failures, written=3)
    assert value("featurebus_frames_processed_total", service="t-count") == before["frames"] + 1
    assert value("featurebus_rows_processed_total", service="t-count") == before["rows"] + 5
    assert value("featurebus_rows_written_total", service="t-count") == before["written"] + 3
    assert value("featurebus_rows_failed_total", service="t-count", reason="null_output") == before["null"] + 2


def test_a_stage_counts_only_the_failures_it_added() -> None:
    carried = [failure("d1", ReasonCode.PLUGIN_EXCEPTION)]
    mine = failure("d2", ReasonCode.DIMENSION_MISMATCH)
    assert new_failures(carried, [*carried, mine]) == [mine]
    assert new_failures(carried, carried) == []


class Offsets:
    """A KafkaOffsets twin: offsets from dicts, keyed by (topic, partition)."""

    def __init__(self, begin: dict[tuple[str, int], int], end: dict[tuple[str, int], int]) -> None:
        self.begin, self.end_, self.commits = begin, end, {}  # type: ignore[var-annotated]
        self.closed = False

    async def beginning(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {p: self.begin.get((p.topic, p.partition), 0) for p in partitions}

    async def end(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {p: self.end_.get((p.topic, p.partition), 0) for p in partitions}

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {p: self.commits.get((group, p.topic, p.partition), -1) for p in partitions}

    async def close(self) -> None:
        self.closed = True


async def test_lag_is_end_minus_committed_and_a_dlq_counts_what_it_retains() -> None:
    offsets = Offsets(
        begin={("p.batch.ready", 1): 2, ("p.batch.ready.dlq", 0): 1},
        end={("p.batch.ready", 0): 10, ("p.batch.ready", 1): 7, ("p.batch.ready.dlq", 0): 4},
    )
    offsets.commits[("p.inference-batch", "p.batch.ready", 0)] = 6
    # partition 1 was never committed: read from its beginning (2), so 5 messages wait there
    gauges = KafkaGauges(offsets, [("batch.ready", "inference-batch")], ["batch.ready"], partitions=2, prefix="p.")
    await gauges.refresh()
    assert value("featurebus_consumer_lag_messages", topic="batch.ready", group="inference-batch") == 4 + 5
    assert value("featurebus_dlq_messages", topic="batch.ready.dlq") == 3
    offsets.commits[("p.inference-batch", "p.batch.ready", 1)] = 7
    await gauges.refresh()
    assert value("featurebus_consumer_lag_messages", topic="batch.ready", group="inference-batch") == 4
    await gauges.stop()
    assert offsets.closed


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hi")


async def test_metrics_are_served_and_each_request_is_timed_by_its_route_template() -> None:
    app = Starlette(routes=[Route("/items/{item_id}", hello)])
    served = MetricsEndpoint(ObservedRequests(app, "t-http"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        assert (await http.get("/items/123")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
        metrics = await http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    labels = {"service": "t-http", "method": "GET", "route": "/items/{item_id}", "status": "200"}
    assert value("featurebus_http_request_duration_seconds_count", **labels) >= 1
    assert value("featurebus_http_request_duration_seconds_count", **(labels | {"route": "unmatched", "status": "404"}))
    assert 'featurebus_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/items/{item_id}"' in (
        metrics.text
    )


async def test_an_internal_api_serves_metrics_without_the_token_and_nothing_else() -> None:
    guarded = ServiceTokenGuard(Starlette(routes=[Route("/x", hello)]), SecretStr("s3cret"), "t-guard")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=MetricsEndpoint(guarded)), base_url="http://t") as h:
        assert (await h.get("/metrics")).status_code == 200
        assert (await h.get("/x")).status_code == 401
        assert (await h.post("/metrics")).status_code == 401
        assert (await h.get("/x", headers={"Authorization": "Bearer s3cret"})).status_code == 200
