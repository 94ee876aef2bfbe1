"""Fixtures shared by every test of the monorepo: a network guard and the real servers (the local
stack, or genuine images under Docker with FEATUREBUS_TEST_STACK=containers)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy" / "local"))
from container_stack import ContainerStack, docker_unavailable, stack_mode
from stack import LocalStack, free_port


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack | ContainerStack]:
    """Kafka, MongoDB and S3 on free loopback ports, for this test session only: the local stack,
    or with ``FEATUREBUS_TEST_STACK=containers`` the genuine images (and a Qdrant server) under
    Docker, skipped with the Docker error where no engine answers."""
    directory = tmp_path_factory.mktemp("stack")
    stack: LocalStack | ContainerStack
    if stack_mode(os.environ) == "containers":
        if reason := docker_unavailable():
            pytest.skip(f"FEATUREBUS_TEST_STACK=containers: {reason}")
        stack = ContainerStack(directory)
    else:
        stack = LocalStack(directory, kafka_port=free_port(), mongo_port=free_port(), s3_port=free_port())
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A unit test that opens a network connection fails; `integration` and `e2e` tests are exempt.

    Unix sockets stay allowed: asyncio's event loop talks to itself through a socketpair.
    """
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("e2e"):
        yield
        return
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return connect(self, address)
        raise AssertionError(f"unit test tried to connect to {address!r}: mark it `integration` or use a twin")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


@pytest.fixture(scope="session")
def offline_models(tmp_path_factory: pytest.TempPathFactory) -> None:
    """As in a worker, before a test imports transformers: the seeded offline model cache, in this
    process's environment for the rest of the session (the Hugging Face libraries read their cache
    and offline settings once, at import, and later tests load from them)."""
    from featurebus.sdk.model_loading import offline_env, seed_offline_models

    cache = tmp_path_factory.mktemp("models")
    seed_offline_models(cache)
    os.environ.update(offline_env(cache))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT of random weights small enough to build in a test (8 dimensions, safetensors and a
    fast tokenizer), saved as ``save_pretrained`` saves a model: what an operator imports."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "penguins", "live", "in", "antarctica", "shares", "sold"]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder of random weights (BERT for sequence classification, one label, 8
    dimensions), saved as ``save_pretrained`` saves one: what an operator imports as a reranker.
    Its scores mean nothing, but they are its own: tests compare them with the model's in-process."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-cross-encoder")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [
        "the",
        "a",
        "of",
        "in",
        "and",
        "penguins",
        "live",
        "antarctica",
        "ice",
        "cold",
        "shares",
        "sold",
        "market",
        "stock",
        "birds",
        "fish",
        "sea",
    ]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(11)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    BertForSequenceClassification(config).save_pretrained(directory, safe_serialization=True)
    return directory


class LLMTestServer:
    """A local OpenAI-compatible provider: ``POST {base_url}/chat/completions`` in OpenAI's shape.

    It records every request (lower-cased headers and JSON body) in :attr:`requests` and answers
    deterministically: for a ``json_schema`` response_format, a JSON object satisfying simple
    schemas (strings "ok", numbers 0.5, integers 1, booleans true, arrays of one item); else the
    user message's text, echoed. Tests make it fail (:meth:`fail_next`), answer slowly
    (:meth:`set_delay`) or answer given content (:meth:`answer_next`). It checks no key; platforms
    started for a test session are given :attr:`api_key`.
    """

    api_key = "sk-featurebus-test-llm-0c4e8a61"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self._app(), log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="llm-test-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the LLM test server did not start")
            time.sleep(0.01)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def fail_next(
        self, status: int, times: int = 1, retry_after: float | None = None, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (e.g. 500, 429, 400) and an OpenAI
        error body saying ``message``."""
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        with self._lock:
            self._failures.extend([(status, headers, message or f"injected failure {status}")] * times)

    def answer_next(self, content: str, times: int = 1) -> None:
        """Answer the next ``times`` successful requests with ``content`` as the message's text."""
        with self._lock:
            self._answers.extend([content] * times)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (requests still overlap)."""
        with self._lock:
            self._delay = seconds

    def reset(self) -> None:
        with self._lock:
            self._requests: list[dict[str, Any]] = []
            self._failures: list[tuple[int, dict[str, str], str]] = []
            self._answers: list[str] = []
            self._delay = 0.0
            self.in_flight = 0
            self.max_in_flight = 0

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self._requests.append({"headers": dict(request.headers), "json": body})
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                delay = self._delay
                failure = self._failures.pop(0) if self._failures else None
                answer = self._answers.pop(0) if self._answers and failure is None else None
            try:
                if delay:
                    await asyncio.sleep(delay)
                if failure is not None:
                    status, headers, message = failure
                    error = {"error": {"message": message, "type": "test_server_error"}}
                    return JSONResponse(error, status_code=status, headers=headers)
                return JSONResponse(_completion(body, answer))
            finally:
                with self._lock:
                    self.in_flight -= 1

        return app


def _completion(body: dict[str, Any], answer: str | None) -> dict[str, Any]:
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if answer is None:
        answer = json.dumps(_example(schema)) if schema is not None else _user_text(body.get("messages") or [])
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def _user_text(messages: list[dict[str, Any]]) -> str:
    texts: list[str] = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(texts)


def _example(schema: Any) -> Any:
    """A value that satisfies a simple JSON schema."""
    if not isinstance(schema, dict):
        return "ok"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return {name: _example(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array" or (kind is None and "items" in schema):
        return [_example(schema.get("items"))]
    return {"number": 0.5, "integer": 1, "boolean": True, "null": None}.get(str(kind), "ok")


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[LLMTestServer]:
    """One local OpenAI-compatible provider for the session (what session-scoped platforms are given)."""
    server = LLMTestServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm_server(llm_server_session: LLMTestServer) -> Iterator[LLMTestServer]:
    """The session's LLM test server, with no recorded requests, failures or delay at the test's start."""
    llm_server_session.reset()
    yield llm_server_session
    llm_server_session.reset()


# ----------------------------------------------------------------------------- plugin environments


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels (FEATUREBUS_PLUGIN_FIND_LINKS) and the installable-packages list that
    pins them (FEATUREBUS_PLUGIN_PACKAGES): what an operator gives a platform without a package index."""

    directory: Path
    packages_file: Path

    def env(self) -> dict[str, str]:
        """The scanner's and inference's settings for it (no index: only these wheels)."""
        return {
            "FEATUREBUS_PLUGIN_PACKAGES": str(self.packages_file),
            "FEATUREBUS_PLUGIN_INDEX_URL": "",
            "FEATUREBUS_PLUGIN_FIND_LINKS": str(self.directory),
        }


# fbdemo 1.2.0 needs fbwidth (both listed); fbdemo 2.0.0 is in the wheel directory but not listed.
DEMO_PACKAGES = """
[fbdemo]
version = "1.2.0"
modules = ["fbdemo"]
requires = ["fbwidth"]

[fbwidth]
version = "0.1.0"
modules = ["fbwidth"]
"""


def build_wheel(
    directory: Path, name: str, version: str, modules: dict[str, str], requires: tuple[str, ...] = ()
) -> Path:
    """A pure-Python wheel of ``modules`` (``{"pkg/__init__.py": source}``), as a build backend makes one."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    files = {
        **modules,
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: featurebus-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/top_level.txt": "".join(sorted({m.split("/")[0] + "\n" for m in modules})),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in {**files, f"{dist}/RECORD": "\n".join(record) + "\n"}.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), text)
    return wheel


@pytest.fixture(scope="session")
def plugin_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    directory = tmp_path_factory.mktemp("wheelhouse")
    width = "def width(text):\n    return len(text)\n"
    build_wheel(directory, "fbwidth", "0.1.0", {"fbwidth/__init__.py": width})
    demo = 'from fbwidth import width\n\nVERSION = "{v}"\n\ndef shout(text):\n    return text.upper() + "!" * width(text)\n'
    build_wheel(directory, "fbdemo", "1.2.0", {"fbdemo/__init__.py": demo.format(v="1.2.0")}, ("fbwidth",))
    build_wheel(directory, "fbdemo", "2.0.0", {"fbdemo/__init__.py": demo.format(v="2.0.0")}, ("fbwidth",))
    packages = directory.parent / "plugin-packages.toml"
    packages.write_text(DEMO_PACKAGES)
    return Wheelhouse(directory, packages)


# ----------------------------------------------------------------------------- a model hub


class FakeHub:
    """A local Hugging Face hub of the repos given (``{repo_id: model directory}``): the model info,
    tree and resolve routes huggingface_hub's client uses; counts each file's downloads."""

    def __init__(self, repos: dict[str, Path]) -> None:
        import hashlib
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.repos = {
            r: {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}
            for r, d in repos.items()
        }
        self.downloads: dict[str, int] = {}
        hub = self
        commit = "f" * 40

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
            ) -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?")[0]
                for repo, files in hub.repos.items():
                    if path in (
                        f"/api/models/{repo}",
                        f"/api/models/{repo}/revision/main",
                        f"/api/models/{repo}/revision/{commit}",
                    ):
                        info = {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                        return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                    if path.startswith(f"/api/models/{repo}/tree/"):
                        tree = [
                            {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                            for f, b in files.items()
                        ]
                        return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        name = path[len(prefix) :].split("/", 1)[1]
                        if name not in files:
                            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                        body = files[name]
                        if not head:
                            hub.downloads[f"{repo}/{name}"] = hub.downloads.get(f"{repo}/{name}", 0) + 1
                        tag = '"' + hashlib.sha256(body).hexdigest() + '"'
                        return self._send(200, body, {"X-Repo-Commit": commit, "ETag": tag}, head)
                self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)

            def do_GET(self) -> None:
                self._answer(False)

            def do_HEAD(self) -> None:
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def model_hub(tiny_bert: Path) -> Iterator[FakeHub]:
    """The session's model hub: ``hubowner/tiny-bert`` (the tiny_bert fixture's files)."""
    hub = FakeHub({"hubowner/tiny-bert": tiny_bert})
    try:
        yield hub
    finally:
        hub.stop()
