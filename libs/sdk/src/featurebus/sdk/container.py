"""``container`` as ``build_steps`` receives it: ``container.llm`` and ``container.secrets``."""

from __future__ import annotations

from typing import Any

__all__ = ["LLMNotConfigured", "PluginContainer", "Secrets", "UnconfiguredLLM"]


class LLMNotConfigured(RuntimeError):
    pass


class UnconfiguredLLM:
    """The LLM accessor when the operator configured no provider: every call fails, clearly."""

    def _fail(self) -> LLMNotConfigured:
        return LLMNotConfigured(
            "no LLM provider is configured on this featurebus installation: the operator sets one up "
            "(container.llm is unavailable until then); use container.secrets with your own API key instead"
        )

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()

    async def process(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()

    @property
    def service(self) -> Any:
        raise self._fail()


class Secrets:
    """``await secrets.get("KEY")`` / ``await secrets.list()`` over the values the worker was given."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = dict(values or {})

    async def get(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(
                f"secret {name!r} is not set for this organization: create it with POST /v1/organizations/secrets"
            ) from None

    async def list(self) -> list[str]:
        return sorted(self._values)


class PluginContainer:
    def __init__(self, llm: Any = None, secrets: Secrets | None = None) -> None:
        self.llm = llm if llm is not None else UnconfiguredLLM()
        self.secrets = secrets if secrets is not None else Secrets()
