"""Assets and concurrency helpers of the guide's Plugin SDK.

``data`` holds an ``s3://`` URL for binary blobs; these resolve it to a local file. Inside the
platform's sandbox a plugin has no object-store credentials: the sandbox installs a fetcher
(:func:`use_s3_fetcher`) that asks the worker outside for the blob, which hands over only the
blobs of the rows the plugin was given. Elsewhere (``featurebus plugin test``) the object store of
the ``FEATUREBUS_S3_*`` settings is read directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from featurebus.common.events import ReasonCode
from featurebus.common.objectstore import ObjectStore
from featurebus.common.settings import CommonSettings
from featurebus.sdk.container import LLMError
from featurebus.sdk.rows import FailedCall, record_failed_call

__all__ = [
    "concurrent_api_calls",
    "download_asset",
    "fetch_asset_bytes",
    "open_asset",
    "parallel_io",
    "resolve_url_to_local_path",
    "use_s3_fetcher",
]

log = logging.getLogger("featurebus.sdk.assets")
T = TypeVar("T")
R = TypeVar("R")


_s3_fetcher: Callable[[str], bytes] | None = None


def use_s3_fetcher(fetcher: Callable[[str], bytes] | None) -> None:
    """Read ``s3://`` assets through ``fetcher`` (the sandbox's broker) instead of the object store."""
    global _s3_fetcher
    _s3_fetcher = fetcher


def fetch_asset_bytes(url: str) -> bytes:
    """The bytes of an ``s3://`` or ``http(s)://`` asset (through the sandbox's broker when set)."""
    scheme = urlparse(url).scheme
    if scheme == "s3" and _s3_fetcher is not None:
        return _s3_fetcher(url)
    if scheme == "s3":

        async def get() -> bytes:
            store = ObjectStore(CommonSettings())
            try:
                return await store.get_bytes(url)
            finally:
                await store.close()

        return _run_coroutine(get())
    if scheme in ("http", "https"):
        # The standard library's client, so the plugin API needs no HTTP package; it follows
        # redirects and raises HTTPError on a 4xx or 5xx answer.
        with urllib.request.urlopen(url, timeout=60) as response:
            body: bytes = response.read()
        return body
    raise ValueError(f"cannot download {url!r}: expected an s3://, http(s):// or file:// URL, or a local path")


def download_asset(url: str, suffix: str = "") -> tuple[str, bool]:
    """``(local_path, is_temp)``: a local file holding the asset; delete it when ``is_temp``."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else url
        if not Path(path).exists():
            raise FileNotFoundError(f"asset {url!r} does not exist")
        return path, False
    data = fetch_asset_bytes(url)
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="fb-asset-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path, True


@contextmanager
def open_asset(url: str, suffix: str = "") -> Iterator[str]:
    """``with open_asset(url, suffix=".jpg") as path:`` — the temp file is removed afterwards."""
    path, is_temp = download_asset(url, suffix)
    try:
        yield path
    finally:
        if is_temp:
            Path(path).unlink(missing_ok=True)


def resolve_url_to_local_path(url: str, suffix: str = "") -> tuple[str, bool]:
    """The guide's older name for :func:`download_asset`."""
    return download_asset(url, suffix)


def parallel_io(items: Sequence[T], process_fn: Callable[[T], R], max_workers: int = 8) -> dict[int, R]:
    """Run ``process_fn`` over ``items`` in threads; ``{index: result}`` for the items that succeeded.

    A failing item is logged and left out, so callers can test ``if i in results`` (the guide).
    """
    results: dict[int, R] = {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        futures = {pool.submit(process_fn, item): i for i, item in enumerate(items)}
        for future, i in futures.items():
            try:
                results[i] = future.result()
            except Exception as exc:
                log.warning("parallel_io: item %d failed: %r", i, exc)
    return results


def concurrent_api_calls(
    items: Sequence[T], async_fn: Callable[[T], Awaitable[R]], max_concurrent: int = 10
) -> list[R | FailedCall]:
    """Await ``async_fn`` over ``items``, at most ``max_concurrent`` at a time; results in input order.

    A failed call gives a :class:`~featurebus.sdk.rows.FailedCall` in its place (never ``None``):
    put into the row's output, it fails that row ``api_error`` with the call's exception
    (``llm_error`` for a failed ``container.llm`` call, with its hint). Works
    whether or not the calling thread already runs an event loop.
    """

    async def run_all() -> list[R | FailedCall]:
        limit = asyncio.Semaphore(max(1, max_concurrent))

        async def one(i: int, item: T) -> R | FailedCall:
            async with limit:
                try:
                    return await async_fn(item)
                except Exception as exc:
                    log.warning("concurrent_api_calls: item %d failed: %r", i, exc)
                    return _failed_call(exc, i, len(items))

        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))

    results = _run_coroutine(run_all())
    for result in results:
        if isinstance(result, FailedCall):
            record_failed_call(result)  # in the step's thread: the host names them if the step then fails
    return results


_RETRY_HINT = (
    "the row is failed rather than given an empty result; retry the batch's failed documents once the API answers again"
)


def _failed_call(exc: Exception, i: int, n: int) -> FailedCall:
    message = f"the API call for item {i} of {n} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, LLMError):
        return FailedCall(ReasonCode.LLM_ERROR, message, exc.hint or _RETRY_HINT)
    return FailedCall(ReasonCode.API_ERROR, message, _RETRY_HINT)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop already runs in this thread: run ours in a fresh thread with its own loop.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
