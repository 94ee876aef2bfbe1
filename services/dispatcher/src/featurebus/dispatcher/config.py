"""The dispatcher's settings (env prefix ``FEATUREBUS_``, shared blocks from CommonSettings)."""

from __future__ import annotations

from featurebus.common.settings import CommonSettings

__all__ = ["DispatcherSettings"]


class DispatcherSettings(CommonSettings):
    # How long a batch trigger waits for objects that the ingest consumer may not have stored
    # yet (objects.ingested and batch.triggered are separate topics, consumed concurrently), before
    # an empty bucket is reported as an error. Counted from when this process first saw the trigger.
    ingest_grace_s: float = 30.0
    # Frames written to the object store concurrently.
    frame_write_concurrency: int = 8

    @property
    def dispatcher_db(self) -> str:
        """The dispatcher's own MongoDB database (no other service reads or writes it)."""
        return f"{self.mongo_db}_dispatcher"
