"""The plugin worker: loads one plugin version once and runs frames and queries through it.

A plain class (unit-testable without Ray); :mod:`featurebus.inference.pools` runs it as a Ray
actor, so plugin code never runs inside the service process.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.common.frames import from_parquet, to_parquet
from featurebus.sdk.host import PluginError, PluginHost, unpack_archive

__all__ = ["PluginWorker", "WorkerOutput"]


@dataclass
class WorkerOutput:
    vectors_parquet: bytes | None
    failures: list[RowFailure] = field(default_factory=list)
    rows_in: int = 0
    rows_embedded: int = 0


class PluginWorker:
    """``__init__`` loads the plugin; a load error is kept and reported for every row it is given."""

    def __init__(self, plugin_id: str, archive: bytes, parameters: dict[str, Any] | None, work_dir: str) -> None:
        self.plugin_id = plugin_id
        self.load_error: PluginError | None = None
        self.host: PluginHost | None = None
        self.frames = 0
        try:
            target = Path(tempfile.mkdtemp(prefix=f"{plugin_id}-", dir=work_dir))
            self.host = PluginHost.load(unpack_archive(archive, target), plugin_id=plugin_id, parameters=parameters)
        except PluginError as err:
            self.load_error = err

    def process(self, frame_parquet: bytes) -> WorkerOutput:
        frame = from_parquet(frame_parquet)
        self.frames += 1
        if self.host is None:
            err = self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "plugin not loaded")
            failures = [
                RowFailure(document_id=str(d), object_id=str(o), reason=err.reason, message=err.message, hint=err.hint)
                for d, o in zip(frame["document_id"], frame["object_id"], strict=True)
            ]
            return WorkerOutput(None, failures, len(frame), 0)
        result = self.host.run(frame)
        data = to_parquet(result.vectors) if result.rows_embedded else None
        return WorkerOutput(data, result.failures, result.rows_in, result.rows_embedded)

    def embed(self, text: str) -> dict[str, list[float]]:
        if self.host is None:
            raise self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "plugin not loaded")
        return self.host.embed_query(text)

    def stats(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "model_loads": self.host.model_loads if self.host else 0,
            "frames": self.frames,
            "load_error": self.load_error.message if self.load_error else None,
        }
