"""``container`` as ``build_steps`` receives it: ``container.llm`` and ``container.secrets``.

Plugin code runs without network and without the operator's credentials. ``container.llm`` is a
:class:`PlatformLLM` over a ``call`` that the platform provides: inside the sandbox it sends the
request to the trusted supervisor, which holds the provider's key and makes the HTTP call. The
secrets an org admin granted to the plugin arrive as plain values in :class:`Secrets`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "REDACTED",
    "LLMError",
    "LLMNotConfigured",
    "LLMRequest",
    "LLMResult",
    "PlatformLLM",
    "PluginContainer",
    "SecretNotGranted",
    "Secrets",
    "UnconfiguredLLM",
    "redact",
]

REDACTED = "[REDACTED]"
# Calls of one PlatformLLM that may wait on the provider at once: above the guide's
# max_concurrent=10, and independent of the machine's CPU count (asyncio's default executor is not).
_LLM_THREADS = 32


class LLMError(RuntimeError):
    """A ``container.llm`` call failed: the provider answered an error, timed out, or is not set up.

    Unhandled in a step, it fails the step's rows with reason ``llm_error``; inside
    ``concurrent_api_calls`` it fails only the row of the call.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray) intact
        return (type(self), (self.message, self.hint))


class LLMNotConfigured(LLMError):
    """The operator configured no LLM provider on this installation."""


class LLMRequest(BaseModel):
    """One generation request, as lenient as the guide's: unknown fields are ignored.

    ``schema`` (a JSON schema, or a pydantic model class) asks for a JSON object, parsed into
    :attr:`LLMResult.data`; the field is ``output_schema`` in Python because pydantic's models
    already have a ``schema`` method.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())

    instruction: str | None = None
    text: str | None = None
    images: list[str] = Field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    output_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    temperature: float | None = None
    max_tokens: int | None = None

    @field_validator("instruction", "text", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)

    @field_validator("images", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    @field_validator("output_schema", mode="before")
    @classmethod
    def _as_json_schema(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value.model_json_schema()
        return value

    def payload(self) -> dict[str, Any]:
        """The request as the platform's ``call`` receives it (JSON; the schema under ``"schema"``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LLMResult(BaseModel):
    """One answer: ``data`` is the parsed JSON object when a schema was given (else None), ``text``
    the raw text; ``model``, ``provider`` and ``usage`` (token counts) as the provider reported."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    data: dict[str, Any] | None = None
    text: str = ""
    model: str | None = None
    provider: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)


class PlatformLLM:
    """``container.llm``: the guide's ``generate``/``process`` over the platform's ``call``.

    ``call`` is synchronous (request dict -> result dict, raising :class:`LLMError`); it runs in
    threads of this object, so calls awaited together (``concurrent_api_calls``) overlap.
    """

    def __init__(self, call: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._call = call
        self._pool: ThreadPoolExecutor | None = None

    async def generate(
        self,
        instruction: str | None = None,
        text: str | None = None,
        images: list[str] | None = None,
        provider: str | None = None,
        model: str | None = None,
        schema: dict[str, Any] | type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Text (and image) generation; with ``schema`` the answer's JSON object is ``.data``."""
        fields = {"instruction": instruction, "text": text, "images": images, "provider": provider, "model": model}
        try:
            request = LLMRequest.model_validate({**kwargs, **fields, "schema": schema})
        except ValidationError as exc:
            raise LLMError(f"invalid container.llm request: {_first_error(exc)}") from None
        return await self.process(request)

    async def process(self, request: LLMRequest | dict[str, Any]) -> LLMResult:
        """One request with full control (the guide's ``container.llm.process(LLMRequest(...))``)."""
        if not isinstance(request, LLMRequest):
            try:
                request = LLMRequest.model_validate(request)
            except ValidationError as exc:
                raise LLMError(f"invalid container.llm request: {_first_error(exc)}") from None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=_LLM_THREADS, thread_name_prefix="container-llm")
        answer = await asyncio.get_running_loop().run_in_executor(self._pool, self._call, request.payload())
        if not isinstance(answer, dict):
            raise LLMError(f"the platform's LLM gateway answered {type(answer).__name__}, not a result")
        try:
            return LLMResult.model_validate(answer)
        except ValidationError as exc:
            raise LLMError(f"the platform's LLM gateway answered a malformed result: {_first_error(exc)}") from None

    @property
    def service(self) -> PlatformLLM:
        """The guide's "direct access" to the service: this object."""
        return self

    def __repr__(self) -> str:
        return "PlatformLLM()"


class UnconfiguredLLM:
    """The LLM accessor when the operator configured no provider: every call fails, clearly."""

    def _fail(self) -> LLMNotConfigured:
        return LLMNotConfigured(
            "no LLM provider is configured on this featurebus installation: the operator sets one up "
            "(container.llm is unavailable until then); use container.secrets with your own API key instead",
            "the operator sets FEATUREBUS_LLM_BASE_URL (and FEATUREBUS_LLM_API_KEY, FEATUREBUS_LLM_MODEL) on inference",
        )

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()

    async def process(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()

    @property
    def service(self) -> Any:
        raise self._fail()

    def __repr__(self) -> str:
        return "UnconfiguredLLM()"


class SecretNotGranted(LookupError):
    """``secrets.get(name)`` of a secret not granted to the plugin; the message says how to grant it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


class Secrets:
    """``await secrets.get("KEY")`` / ``await secrets.list()`` over the values granted to the plugin.

    ``namespace_id`` and ``plugin_id`` only make the message of :class:`SecretNotGranted` exact.
    Neither ``repr`` nor ``str`` shows a value.
    """

    def __init__(
        self, values: dict[str, str] | None = None, namespace_id: str | None = None, plugin_id: str | None = None
    ) -> None:
        self._values = dict(values or {})
        self._namespace_id, self._plugin_id = namespace_id, plugin_id

    async def get(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise SecretNotGranted(name, self._not_granted(name)) from None

    async def list(self) -> list[str]:
        """The names of the granted secrets (never their values)."""
        return sorted(self._values)

    def _not_granted(self, name: str) -> str:
        namespace, plugin = self._namespace_id or "{namespace_id}", self._plugin_id or "{plugin_id}"
        granted = ", ".join(sorted(self._values)) or "none"
        return (
            f"secret {name!r} is not granted to plugin {plugin!r} (granted: {granted}): an org admin grants it with "
            f"PUT /v1/namespaces/{namespace}/plugins/{plugin}/secrets, and it must exist in the organization "
            "(POST /v1/organizations/secrets); workers started after the grant get it"
        )

    def __repr__(self) -> str:
        return f"Secrets(names={sorted(self._values)!r})"

    __str__ = __repr__


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each value (of 4 characters or more) replaced by ``[REDACTED]``.

    Longest values first, so a secret that contains another is hidden whole.
    """
    for value in sorted({v for v in values if isinstance(v, str) and len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


class PluginContainer:
    """What ``build_steps(..., container=...)`` receives: ``llm`` and ``secrets``."""

    def __init__(self, llm: Any = None, secrets: Secrets | None = None) -> None:
        self.llm = llm if llm is not None else UnconfiguredLLM()
        self.secrets = secrets if secrets is not None else Secrets()

    def __repr__(self) -> str:
        return f"PluginContainer(llm={self.llm!r}, secrets={self.secrets!r})"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "request"
    return f"{where}: {error.get('msg', 'invalid')}"
