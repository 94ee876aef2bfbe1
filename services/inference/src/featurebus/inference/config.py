"""The inference service's settings (env prefix ``FEATUREBUS_``)."""

from __future__ import annotations

from pathlib import Path

from featurebus.common.settings import CommonSettings

__all__ = ["InferenceSettings"]


class InferenceSettings(CommonSettings):
    # A Ray cluster to join (also read from RAY_ADDRESS); None starts Ray inside this process.
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    # CPUs each plugin actor asks for. On 2-core machines a whole CPU per actor starves Ray.
    actor_num_cpus: float = 0.5
    # Pools unused this long are shut down (their actors and models freed).
    actor_idle_seconds: float = 600.0
    # A frame that takes longer fails with reason "timeout" and its actor is replaced.
    frame_timeout_s: float = 600.0
    # A frame whose actor died this many times fails instead of being retried again.
    max_actor_deaths_per_frame: int = 3
    plugin_cache_dir: Path | None = None
    model_cache_dir: Path | None = None

    @property
    def plugins_dir(self) -> Path:
        return (self.plugin_cache_dir or self.data_dir / "plugins").resolve()

    @property
    def models_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()
