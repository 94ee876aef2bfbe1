"""The trusted side of ``container.llm``: the operator's OpenAI-compatible provider, called for plugins.

Plugin code never holds the provider's key. Its ``container.llm`` requests (dicts, as
:class:`~featurebus.sdk.container.LLMRequest` dumps them) reach :meth:`LLMGateway.call` in the
sandbox's supervisor (or, with the sandbox off, in the worker), which makes the HTTP call and
answers the dict that the plugin's :class:`~featurebus.sdk.container.PlatformLLM` turns into an
``LLMResult``. Every failure is an :class:`~featurebus.sdk.container.LLMError` that never contains
the key.
"""

from __future__ import annotations

import base64
import email.utils
import json
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from pydantic import SecretStr, ValidationError

from featurebus.sdk.container import LLMError, LLMNotConfigured, LLMRequest, redact

__all__ = ["DEFAULT_LLM_MODEL", "LLMGateway", "LLMSettings"]

DEFAULT_LLM_MODEL = "gpt-4o-mini"
PROVIDER = "openai_compatible"
_EXCERPT = 500
_MAX_RETRY_AFTER_S = 10.0
_SETTINGS = "FEATUREBUS_LLM_BASE_URL / FEATUREBUS_LLM_API_KEY / FEATUREBUS_LLM_MODEL"


@dataclass(frozen=True)
class LLMSettings:
    """The operator's provider: ``base_url`` of an OpenAI-compatible API (``.../v1``), its key,
    the model used when a plugin names none; calls at once per gateway, per-call timeout, retries
    of transport errors, 429 and 5xx (after ``backoff_s``, doubling)."""

    base_url: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)
    model: str = DEFAULT_LLM_MODEL
    max_concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 0.5

    @property
    def configured(self) -> bool:
        return bool(self.base_url)


class LLMGateway:
    """``call(request) -> result`` against the operator's provider; thread-safe, bounded.

    ``fetch(uri) -> bytes`` reads the ``s3://`` images a request names (the supervisor passes one
    that allows only the blobs of the frame in flight); without it such images fail the call.
    """

    def __init__(self, settings: LLMSettings, fetch: Callable[[str], bytes] | None = None) -> None:
        self.settings = settings
        self._fetch = fetch
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrency))
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ``container.llm`` request: ``{"text", "data", "model", "provider", "usage"}``, else LLMError."""
        if not self.settings.configured:
            raise LLMNotConfigured(
                "no LLM provider is configured on this featurebus installation, so container.llm cannot answer",
                f"the operator sets {_SETTINGS} on the inference service",
            )
        try:
            parsed = LLMRequest.model_validate(request)
        except ValidationError as exc:
            raise LLMError(f"invalid container.llm request: {exc.errors()[0].get('msg', 'invalid')}") from None
        try:
            body = self._body(parsed)
            with self._slots:
                answer = self._post(body)
            return _result(answer, parsed, body["model"])
        except LLMError as err:  # the last guard: no message may carry the key
            raise type(err)(self._redact(err.message), self._redact(err.hint) if err.hint else None) from None

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --------------------------------------------------------------------------- the request

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        images = [{"type": "image_url", "image_url": {"url": self._image_url(uri)}} for uri in request.images]
        if request.text is None and not images:
            if request.instruction is None:
                raise LLMError("the container.llm request has no instruction, text or images")
            messages.append({"role": "user", "content": request.instruction})
        else:
            if request.instruction is not None:
                messages.append({"role": "system", "content": request.instruction})
            if images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": request.text}] if request.text else []
                messages.append({"role": "user", "content": parts + images})
            else:
                messages.append({"role": "user", "content": request.text})
        body: dict[str, Any] = {"model": request.model or self.settings.model, "messages": messages}
        if request.output_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "result", "schema": request.output_schema},
            }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        return body

    def _image_url(self, uri: str) -> str:
        """http(s):// and data: URLs as given; s3:// blobs read through ``fetch`` and inlined."""
        scheme = urlparse(uri).scheme
        if scheme in ("http", "https", "data"):
            return uri
        if scheme != "s3":
            raise LLMError(
                f"the image {uri[:200]!r} cannot be sent to the LLM: images are http(s)://, data: or s3:// URLs",
                "pass the row's batch['data'] URL, or a data: URL of the image's bytes",
            )
        if self._fetch is None:
            raise LLMError(f"the image {uri!r} cannot be sent to the LLM: no blob reader is available here")
        try:
            blob = self._fetch(uri)
        except Exception as exc:
            raise LLMError(
                f"the image {uri!r} could not be read for the LLM: {type(exc).__name__}: {exc}",
                "a plugin may send only the images of the rows it was given",
            ) from None
        return f"data:{_mime_type(blob, uri)};base64,{base64.b64encode(blob).decode('ascii')}"

    # --------------------------------------------------------------------------- the HTTP call

    def _post(self, body: dict[str, Any]) -> Any:
        """The provider's JSON answer; transport errors, 429 and 5xx retried, other 4xx at once."""
        settings = self.settings
        url = f"{(settings.base_url or '').rstrip('/')}/chat/completions"
        attempts = 1 + max(0, settings.retries)
        last = ""
        for attempt in range(attempts):
            wait = settings.backoff_s * 2**attempt
            try:
                response = self._http().post(url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                last = f"no answer within {settings.timeout_s:g} s"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        raise LLMError(
                            f"the LLM provider answered HTTP {response.status_code} with a body that is not JSON: "
                            f"{self._excerpt(response.text)}"
                        ) from None
                last = f"HTTP {response.status_code}: {self._excerpt(response.text)}"
                if response.status_code != 429 and response.status_code < 500:
                    raise LLMError(f"the LLM provider refused the request with {last}", _refusal_hint(response))
                asked = _retry_after(response)
                wait = wait if asked is None else asked
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise LLMError(
            f"the LLM provider failed the request {attempts} times; last: {last}",
            "the provider is unavailable or rate limiting; retry the failed documents once it answers again",
        )

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.settings.timeout_s,
                    limits=httpx.Limits(max_connections=max(1, self.settings.max_concurrency)),
                )
            return self._client

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    def _excerpt(self, text: str) -> str:
        text = self._redact(text.strip())
        return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return redact(text, [key.get_secret_value()]) if key is not None else text


def _result(answer: Any, request: LLMRequest, model: str) -> dict[str, Any]:
    """The provider's chat completion as the dict PlatformLLM reads."""
    try:
        message = answer["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise LLMError(f"the LLM provider's answer is not a chat completion: {json.dumps(answer)[:_EXCERPT]}") from None
    text = _content(message.get("content") if isinstance(message, dict) else None)
    if text is None:
        reason = answer["choices"][0].get("finish_reason") if isinstance(answer["choices"][0], dict) else None
        raise LLMError(f"the LLM provider answered without content (finish_reason {reason!r})")
    data = _json_object(text) if request.output_schema is not None else None
    usage = answer.get("usage")
    return {
        "text": text,
        "data": data,
        "model": answer.get("model") or model,
        "provider": PROVIDER,
        "usage": usage if isinstance(usage, dict) else {},
    }


def _content(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some providers answer content parts
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


def _json_object(text: str) -> dict[str, Any]:
    body = text.strip()
    if body.startswith("```"):  # a fenced block, as some compatible providers answer
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        data = json.loads(body)
    except ValueError:
        raise LLMError(
            f"the LLM was asked for JSON matching the schema, and answered text that is not JSON: {text[:_EXCERPT]!r}",
            "the operator's model must support response_format json_schema (FEATUREBUS_LLM_MODEL)",
        ) from None
    if not isinstance(data, dict):
        raise LLMError(
            f"the LLM was asked for a JSON object matching the schema, and answered a {type(data).__name__}: "
            f"{text[:_EXCERPT]!r}"
        )
    return data


def _retry_after(response: httpx.Response) -> float | None:
    """The provider's Retry-After (seconds or an HTTP date), capped; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _refusal_hint(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        return "the provider refused the operator's key: the operator checks FEATUREBUS_LLM_API_KEY"
    if response.status_code == 404:
        return "the provider knows no such model or endpoint: check the model name and FEATUREBUS_LLM_BASE_URL"
    return "the provider refused this request: check the model, the schema and the images the step sends"


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def _mime_type(blob: bytes, uri: str) -> str:
    """The image's type from its first bytes, else from its name."""
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in _SIGNATURES:
        if blob.startswith(signature):
            return mime
    return mimetypes.guess_type(urlparse(uri).path)[0] or "application/octet-stream"
