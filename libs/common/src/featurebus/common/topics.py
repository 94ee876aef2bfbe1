"""The topic→model table: the one place to look a topic up.

Every topic has exactly one payload model; ``<topic>.dlq`` holds that topic's poison messages
(the raw bytes plus the error in headers) so that they can be inspected and replayed.
"""

from __future__ import annotations

from featurebus.common import events as ev

__all__ = ["DLQ_SUFFIX", "TOPICS", "dlq", "topic_of"]

DLQ_SUFFIX = ".dlq"

TOPICS: dict[str, type[ev.Event]] = {
    "plugin.uploaded": ev.PluginUploaded,
    "plugin.scanned": ev.PluginScanned,
    "plugin.deploy": ev.DeployRequested,
    "plugin.deployment": ev.DeploymentChanged,
    "objects.ingested": ev.ObjectsIngested,
    "batch.requested": ev.BatchRequested,
    "batch.triggered": ev.BatchTriggered,
    "batch.planned": ev.BatchPlanned,
    "batch.ready": ev.BatchReady,
    "vectors.produced": ev.VectorsProduced,
    "batch.indexed": ev.BatchIndexed,
    "batch.cancelled": ev.BatchCancelled,
    "collection.lifecycle": ev.CollectionLifecycle,
}

_BY_MODEL: dict[type[ev.Event], str] = {model: topic for topic, model in TOPICS.items()}


def topic_of(event: ev.Event | type[ev.Event]) -> str:
    """The (unprefixed) topic an event is published on."""
    model = event if isinstance(event, type) else type(event)
    try:
        return _BY_MODEL[model]
    except KeyError:
        raise KeyError(f"{model.__name__} has no topic: add it to featurebus.common.topics.TOPICS") from None


def dlq(topic: str) -> str:
    return topic + DLQ_SUFFIX
