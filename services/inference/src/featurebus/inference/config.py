"""The inference service's settings (env prefix ``FEATUREBUS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from featurebus.common.settings import DEFAULT_INFERENCE_PORT, CommonSettings
from featurebus.inference.model_cache import NodeModels
from featurebus.inference.plugin_access import DEFAULT_LLM_MODEL, LLMSettings
from featurebus.inference.plugin_envs import PluginEnvironments

__all__ = ["InferenceSettings"]


class InferenceSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="FEATUREBUS_", extra="ignore", populate_by_name=True)

    # A Ray cluster to join; None starts Ray inside this process. Ray's own RAY_ADDRESS works too.
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("FEATUREBUS_RAY_ADDRESS", "RAY_ADDRESS")
    )
    # The internal embed API (query_api.py) the registry's retriever executions call; loopback by
    # default, and every request needs FEATUREBUS_INTERNAL_TOKEN. Another process of this service
    # needs another port.
    inference_host: str = "127.0.0.1"
    inference_port: int = DEFAULT_INFERENCE_PORT
    # CPUs of the Ray started inside this process (None: all of the machine's).
    ray_num_cpus: int | None = None
    # CPUs each plugin actor asks for. On 2-core machines a whole CPU per actor starves Ray.
    actor_num_cpus: float = 0.5
    # Memory of one GPU of the cluster: a plugin's compute_profile.gpu_memory_gb becomes that share
    # of a GPU (num_gpus), so that the actors of small models share a card.
    gpu_memory_gb: float = Field(default=16.0, gt=0)
    # Pools unused this long are shut down (their actors and models freed).
    actor_idle_seconds: float = 600.0
    # A plugin that failed to load answers "plugin_load_failed" at once for this long, then is
    # loaded again (so one broken plugin does not re-load for every frame, and a fix is picked up).
    load_failure_retry_s: float = 60.0
    # Frames run in parallel by this many Kafka consumers of this process (each takes whole
    # partitions of batch.ready, so more than FEATUREBUS_TOPIC_PARTITIONS adds nothing); a plugin's
    # pool grows to compute_profile.max_concurrency actors when its frames arrive together.
    frame_workers: int = Field(default=4, ge=1, le=64)
    # Real-time deployments (Ray Serve): replicas not all ready within start_timeout fail the
    # deployment; the health check (a probe query) must answer within probe_timeout; a replaced
    # deployment keeps answering for drain_s after the new one took over, while callers switch.
    realtime_start_timeout_s: float = Field(default=600.0, gt=0)
    realtime_probe_timeout_s: float = Field(default=120.0, gt=0)
    realtime_drain_s: float = Field(default=10.0, ge=0)
    # CPUs one real-time replica asks Ray for: a replica mostly waits for requests, and on a small
    # machine a whole share per replica leaves no room for the batch actors.
    realtime_replica_num_cpus: float = Field(default=0.25, gt=0)
    # A frame that takes longer fails with reason "timeout" and its actor is replaced.
    frame_timeout_s: float = 600.0
    # A frame whose actor died this many times fails instead of being retried again.
    max_actor_deaths_per_frame: int = 3
    # The plugin sandbox (README, "Plugin sandbox"). "off" runs plugin code unconfined inside the
    # Ray actor, with the actor's credentials: for debugging only, and loudly logged.
    sandbox: Literal["enforce", "off"] = "enforce"
    # Where the start-up check that the kernel can sandbox plugins runs (with the sandbox
    # enforced): "driver" in this process, before Ray starts (the default: with local Ray, plugin
    # workers run on this machine); "workers" in a Ray task on every node of the cluster that offers
    # CPUs (where plugin actors and replicas are placed), for a driver pod without user namespaces
    # beside Ray worker pods that have them. Either way a failed check stops the service, and every
    # sandbox refuses to start where the kernel cannot build it (the plugin's rows then fail
    # plugin_load_failed): plugin code never runs unconfined unless FEATUREBUS_SANDBOX=off.
    sandbox_self_check: Literal["driver", "workers"] = "driver"
    # "workers": how long to wait for a first node with CPUs to join (Ray workers may start after
    # the driver), and for the probes to answer.
    sandbox_self_check_timeout_s: float = Field(default=300.0, gt=0)
    # Outbound network for plugins whose compute_profile.resource_type is "api" (other plugins
    # never get one). Off by default: a sandbox then has loopback only.
    sandbox_egress: bool = False
    # The TCP ports such plugins may connect to (the kernel enforces it, with Landlock); a
    # comma-separated list in FEATUREBUS_SANDBOX_EGRESS_PORTS, e.g. "443,80".
    sandbox_egress_ports: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], NoDecode] = Field(
        default_factory=lambda: [443, 80]
    )

    @field_validator("sandbox_egress_ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    # Address space a sandboxed plugin may map beyond compute_profile.actor_memory_gb: libraries
    # reserve far more virtual memory than they use (thread stacks, malloc arenas, mapped .so files).
    sandbox_address_overhead_gb: float = Field(default=4.0, ge=0)
    # CPU seconds one frame or query may use before its sandbox is stopped (the row fails).
    sandbox_frame_cpu_seconds: float = Field(default=300.0, gt=0)
    # Size of a sandbox's scratch directory (a tmpfs, emptied after every frame).
    sandbox_scratch_gb: float = Field(default=1.0, gt=0)
    plugin_cache_dir: Path | None = None
    # Plugin environments (README, "Plugin dependencies"): where a node installs them (default
    # <data dir>/plugin-envs), the package index pip installs their wheels from (unset: pip's own
    # configuration, PyPI by default; "" for none, only the wheel directories), wheel directories or
    # pages to look in (comma-separated), and how long one install may take.
    plugin_env_dir: Path | None = None
    plugin_index_url: str | None = None
    plugin_find_links: Annotated[list[str], NoDecode] = Field(default_factory=list)
    plugin_env_timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("plugin_find_links", mode="before")
    @classmethod
    def _links(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    model_cache_dir: Path | None = None
    # The most a node keeps of the model registry's models (least recently used ones go first).
    model_cache_gb: float = Field(default=50.0, gt=0)
    # How long a plugin's first worker waits for a cluster model the registry downloads from the
    # model hub on first use (FEATUREBUS_MODEL_HUB, a registry setting); after that its rows fail
    # model_not_available until the download is done.
    model_fetch_wait_s: float = Field(default=300.0, gt=0)

    # The operator's OpenAI-compatible LLM provider that plugins reach through container.llm
    # (plugin_access.py): its base URL (e.g. https://api.openai.com/v1; unset, container.llm
    # fails every call llm_error), its key (held by the sandbox's supervisor, never by plugin
    # code), and the model used when a plugin names none. Calls at once per plugin worker, the
    # timeout of one call, and retries of transport errors, 429 and 5xx.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    llm_max_concurrency: int = Field(default=8, ge=1, le=256)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_retries: int = Field(default=2, ge=0, le=10)

    def llm(self) -> LLMSettings:
        """The LLM provider's settings, as the gateway takes them."""
        return LLMSettings(
            base_url=self.llm_base_url or None,
            api_key=self.llm_api_key,
            model=self.llm_model,
            max_concurrency=self.llm_max_concurrency,
            timeout_s=self.llm_timeout_s,
            retries=self.llm_retries,
        )

    @property
    def plugins_dir(self) -> Path:
        """Archives by checksum (``archives/``) and the actors' unpacked plugins (``work/``)."""
        return (self.plugin_cache_dir or self.data_dir / "plugins").resolve()

    @property
    def models_dir(self) -> Path:
        """The offline Hugging Face cache the actors load models from."""
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    def plugin_environments(self) -> PluginEnvironments:
        """Where and from what the nodes install plugin environments."""
        return PluginEnvironments(
            (self.plugin_env_dir or self.data_dir / "plugin-envs").resolve(),
            self.plugin_index_url,
            tuple(self.plugin_find_links),
            self.plugin_env_timeout_s,
        )

    def node_models(self) -> NodeModels:
        """Where a node keeps models: cluster models in the Hugging Face cache, namespace models
        beside it (never inside it: every sandbox sees the cache, each only its own namespace's)."""
        hub = self.models_dir
        return NodeModels(hub, hub.with_name(hub.name + "-namespaces"), int(self.model_cache_gb * 1024**3))
