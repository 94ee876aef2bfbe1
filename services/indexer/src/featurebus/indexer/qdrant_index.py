"""The Qdrant adapter: the only module that talks to Qdrant (with :mod:`.payload_indexes`, its part
that creates the payload indexes filters use).

Works the same over a Qdrant server (``AsyncQdrantClient(url=...)``), local mode on disk
(``path=...``) and in memory (``":memory:"``, the unit tests' twin). Each featurebus collection
is the Qdrant collection ``fb_{collection_id}`` with one named dense vector per feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from featurebus.common.filters import checked, is_group
from featurebus.common.kafka import TransientError
from featurebus.common.queries import SearchHit
from featurebus.common.telemetry import tracer
from featurebus.indexer.payload_indexes import PayloadIndexes, index_schemas
from featurebus.indexer.vector_schema import VectorSpec

__all__ = ["IndexPoint", "QdrantIndex", "QdrantUnavailable", "collection_name", "payload_filter"]

_TO_QDRANT = {"cosine": models.Distance.COSINE, "euclid": models.Distance.EUCLID, "dot": models.Distance.DOT}
_FROM_QDRANT = {
    models.Distance.COSINE: "cosine",
    models.Distance.EUCLID: "euclid",
    models.Distance.DOT: "dot",
    models.Distance.MANHATTAN: "manhattan",
}


class QdrantUnavailable(TransientError):
    """Qdrant could not be reached or answered 5xx: the message is retried, not dead-lettered."""


def collection_name(collection_id: str) -> str:
    return f"fb_{collection_id}"


@dataclass(frozen=True)
class IndexPoint:
    id: str
    vectors: Mapping[str, list[float]]
    payload: Mapping[str, Any]


def payload_filter(filters: Mapping[str, Any], where: Sequence[Mapping[str, Any]] = ()) -> models.Filter | None:
    """Qdrant's filter of equality ``filters`` on payload keys (a list value matches any of its
    items) and of ``where``, filters in the filter language (:mod:`featurebus.common.filters`):
    all of them must hold. Raises ValueError naming the key or the place of a filter that cannot run.
    """
    conditions: list[models.Condition] = []
    for key, value in filters.items():
        match: models.MatchValue | models.MatchAny
        if isinstance(value, bool | int | str):
            match = models.MatchValue(value=value)
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value)
        ):
            match = models.MatchAny(any=value)
        else:
            raise ValueError(
                f"filter {key!r}: {value!r} cannot be matched exactly; use a string, integer, boolean "
                "or a non-empty list of strings or integers"
            )
        conditions.append(models.FieldCondition(key=key, match=match))
    conditions += [_condition(checked(node, f"where[{i}]")) for i, node in enumerate(where)]
    return models.Filter(must=conditions) if conditions else None


def _condition(node: dict[str, Any]) -> models.Condition:
    """One checked filter as Qdrant's condition (a group as a nested filter)."""
    if is_group(node):  # AND: all hold (must), OR: one at least (should), NOT: none (must_not)
        parts = {group: [_condition(m) for m in members] for group, members in node.items()}
        return models.Filter(must=parts.get("AND"), should=parts.get("OR"), must_not=parts.get("NOT"))
    key, operator, value = node["field"], node["operator"], node["value"]
    if operator in ("eq", "ne"):
        equal = (
            models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
            if isinstance(value, float)
            else models.FieldCondition(key=key, match=models.MatchValue(value=value))
        )
        return equal if operator == "eq" else models.Filter(must_not=[equal])
    if operator in ("in", "nin"):
        member = models.FieldCondition(key=key, match=models.MatchAny(any=value))
        return member if operator == "in" else models.Filter(must_not=[member])
    if operator in ("gt", "gte", "lt", "lte"):
        bound: Any = datetime.fromisoformat(value) if isinstance(value, str) else value
        limits = {operator: bound}
        kind = models.DatetimeRange if isinstance(value, str) else models.Range
        return models.FieldCondition(key=key, range=kind.model_validate(limits))
    if operator == "exists":
        empty = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
        return models.Filter(must_not=[empty]) if value else empty
    if operator == "is_null":
        null = models.IsNullCondition(is_null=models.PayloadField(key=key))
        return null if value else models.Filter(must_not=[null])
    return models.FieldCondition(key=key, match=models.MatchText(text=value))  # contains, text


class QdrantIndex:
    """featurebus collections in Qdrant: schema, upserts and named-vector search."""

    def __init__(self, client: AsyncQdrantClient, upsert_batch_size: int = 256) -> None:
        self.client = client
        self.upsert_batch_size = upsert_batch_size
        self.payload_indexes = PayloadIndexes(client)

    async def schema(self, collection_id: str) -> dict[str, VectorSpec] | None:
        """The collection's named vectors as Qdrant has them, or None when it does not exist."""
        name = collection_name(collection_id)
        try:
            if not await self.client.collection_exists(name):
                return None
            info = await self.client.get_collection(name)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise self._classify(exc) from exc
        vectors = info.config.params.vectors
        if vectors is None:
            return {}
        if isinstance(vectors, models.VectorParams):  # an unnamed vector: not created by featurebus
            vectors = {"": vectors}
        return {
            vname: VectorSpec(vname, params.size, _FROM_QDRANT.get(params.distance, str(params.distance).lower()))
            for vname, params in vectors.items()
        }

    async def create(self, collection_id: str, schema: Mapping[str, VectorSpec]) -> None:
        config = {
            spec.name: models.VectorParams(size=spec.size, distance=_TO_QDRANT[spec.distance])
            for spec in schema.values()
        }
        name = collection_name(collection_id)
        try:
            await self.client.create_collection(name, vectors_config=config)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise self._classify(exc) from exc
        self.payload_indexes.forget(name)

    async def delete(self, collection_id: str) -> bool:
        """Delete the collection; False when there was none (deleting twice is fine)."""
        name = collection_name(collection_id)
        try:
            deleted = bool(await self.client.delete_collection(name))
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise self._classify(exc) from exc
        self.payload_indexes.forget(name)
        return deleted

    async def upsert(self, collection_id: str, points: Sequence[IndexPoint]) -> None:
        """Write points and wait until Qdrant applied them (the offset commits only afterwards)."""
        name = collection_name(collection_id)
        attributes: dict[str, str | int] = {
            "db.system.name": "qdrant",
            "db.collection.name": name,
            "featurebus.points": len(points),
        }
        with tracer().start_as_current_span("qdrant.upsert", attributes=attributes):
            for start in range(0, len(points), self.upsert_batch_size):
                chunk = [
                    models.PointStruct(id=p.id, vector=dict(p.vectors), payload=dict(p.payload))
                    for p in points[start : start + self.upsert_batch_size]
                ]
                try:
                    await self.client.upsert(name, points=chunk, wait=True)
                except (ResponseHandlingException, UnexpectedResponse) as exc:
                    raise self._classify(exc) from exc

    async def count(self, collection_id: str) -> int:
        return (await self.client.count(collection_name(collection_id), exact=True)).count

    async def search(
        self,
        collection_id: str,
        vector_name: str,
        vector: Sequence[float],
        limit: int,
        filters: Mapping[str, Any] | None = None,
        where: Sequence[Mapping[str, Any]] = (),
        *,
        with_vector: bool = False,
        leave_out: str | None = None,
    ) -> list[SearchHit]:
        """Nearest points by one named vector, in Qdrant's order, with their payloads (and that
        vector, ``with_vector``); ``leave_out``: a point id not to answer ("more like this" itself).

        The first search filtering on a field starts creating its payload index, without waiting.
        """
        name = collection_name(collection_id)
        query_filter = payload_filter(filters or {}, where)
        self.payload_indexes.ensure(name, index_schemas(filters or {}, where))
        if leave_out is not None:
            query_filter = models.Filter(
                must=[query_filter] if query_filter is not None else None,
                must_not=[models.HasIdCondition(has_id=[leave_out])],
            )
        try:
            response = await self.client.query_points(
                name,
                query=list(vector),
                using=vector_name,
                limit=limit,
                query_filter=query_filter,
                with_payload=True,
                with_vectors=[vector_name] if with_vector else False,
            )
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise self._classify(exc) from exc
        return [
            SearchHit(
                document_id=str((point.payload or {}).get("document_id", point.id)),
                collection_id=collection_id,
                score=point.score,
                payload=dict(point.payload or {}),
                vectors={vector_name: list(_named(point.vector, vector_name))} if with_vector else None,
            )
            for point in response.points
        ]

    async def vector_of(self, collection_id: str, point_id: str, vector_name: str) -> list[float] | None:
        """The point's named vector, None when the point (or that vector of it) is not there."""
        try:
            points = await self.client.retrieve(
                collection_name(collection_id), ids=[point_id], with_payload=False, with_vectors=[vector_name]
            )
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise self._classify(exc) from exc
        if not points:
            return None
        found = _named(points[0].vector, vector_name)
        return list(found) if found else None

    async def close(self) -> None:
        await self.payload_indexes.close()
        await self.client.close()

    @staticmethod
    def _classify(exc: Exception) -> Exception:
        """Connection trouble and 5xx are transient; a 4xx is a real error about the request."""
        if isinstance(exc, ResponseHandlingException):
            return QdrantUnavailable(f"Qdrant unreachable: {exc}")
        if isinstance(exc, UnexpectedResponse) and exc.status_code is not None and exc.status_code >= 500:
            return QdrantUnavailable(f"Qdrant answered {exc.status_code}: {exc}")
        return exc


def _named(vectors: Any, name: str) -> Sequence[float]:
    """One named dense vector of a point's ``vector`` field ([] when it has none by that name)."""
    if isinstance(vectors, dict):
        found = vectors.get(name)
        return found if isinstance(found, list) else []
    return []
