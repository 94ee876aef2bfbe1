"""Fixtures shared by every test of the monorepo: a network guard and the real local stack."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy" / "local"))
from stack import LocalStack, free_port


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka, MongoDB and S3 on free loopback ports, for this test session only."""
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"), kafka_port=free_port(), mongo_port=free_port(), s3_port=free_port()
    )
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
