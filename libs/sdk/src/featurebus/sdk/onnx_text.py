"""Text embedding on ONNX Runtime: the fast path of the builtin text embedders, open to plugins.

An :class:`OnnxTextEncoder` runs a BERT-style encoder exported to ONNX (any file whose inputs are
``input_ids`` and ``attention_mask``, with ``token_type_ids`` optional, and whose first output is
the token states or an already pooled vector) with a Hugging Face ``tokenizer.json``. Texts are
tokenized in one call, sorted by length and cut into length buckets, each padded only to its
longest member (never to a fixed length), so short texts cost what they are. Outputs are mean-pooled over the
real tokens and L2-normalised, as sentence-transformers does.

Threads follow the worker's compute profile (``OMP_NUM_THREADS``, which the platform sets per
actor), and the session's threads sleep between calls when the platform asks math libraries to
(``OMP_WAIT_POLICY=PASSIVE``), rather than spinning on cores that other work needs. The CUDA
provider is used where ``onnxruntime-gpu`` finds a GPU, the CPU provider otherwise.

sentence-transformers on torch stays the reference: the tests hold each fast model to it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxTextEncoder", "verify_sha256"]


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ValueError unless the file at ``path`` has the sha256 ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ValueError(
            f"{path} has sha256 {digest.hexdigest()}, not {expected}: the file is damaged or was replaced; "
            "reinstall the package that ships it"
        )


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def _providers(available: Sequence[str]) -> list[str]:
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices by length, in batches of at most ``batch_size`` whose longest member is at most
    1.25x (+4 tokens) its shortest: padding wastes at most a fifth of a batch's work."""
    buckets: list[list[int]] = []
    shortest = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if not buckets or len(buckets[-1]) >= batch_size or lengths[i] > shortest * 1.25 + 4:
            buckets.append([])
            shortest = lengths[i]
        buckets[-1].append(i)
    return buckets


class OnnxTextEncoder:
    """``encode(texts) -> float32 array (len(texts), dim)``, normalised; thread-compatible, not thread-safe."""

    def __init__(
        self,
        model_path: str | Path,
        tokenizer_path: str | Path,
        *,
        max_length: int = 256,
        normalize: bool = True,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()  # padded here per batch, never to the file's fixed length
        tokenizer.enable_truncation(max_length)
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.inter_op_num_threads = 1
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), options, providers=_providers(ort.get_available_providers())
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise ValueError(f"{model_path} has no input {sorted(missing)}: not a BERT-style text encoder")
        self.normalize = normalize
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]
        for bucket in _length_buckets([len(i) for i in ids], batch_size):
            out[bucket] = self._run([ids[i] for i in bucket])
        return out

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        states = self._session.run(None, feeds)[0]
        if states.ndim == 3:  # token states: the mean over the real tokens
            weights = mask[..., None].astype(np.float32)
            states = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        vectors = np.asarray(states, dtype=np.float32)
        if self.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
