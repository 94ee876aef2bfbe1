"""Inside the sandbox, a plugin loads the registry's models its node installed — a cluster model
through the Hugging Face cache (the guide's load_hf_model), its namespace's own weights with
load_namespace_model — and nothing of another namespace's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_twins import frame, toy_archive
from safetensors.torch import save_file

from featurebus.common.frames import from_parquet
from featurebus.common.model_store import ModelFile, ModelManifest
from featurebus.inference.model_cache import ModelShipment, NodeModels, install_models
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.sdk.model_loading import offline_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "toy"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": DIM, "distance_metric": "cosine"}]
"""
HF_PIPELINE = """
import torch
from engine.models import load_hf_model
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from transformers import AutoTokenizer, BertConfig, BertModel

class Embed:
    def __init__(self, config):
        cached = load_hf_model(hf_model_id="acme/tiny-bert", model_class="AutoModel", tokenizer_class="AutoTokenizer")
        self.model = BertModel(BertConfig.from_dict(cached["config"]))
        self.model.load_state_dict(cached["state_dict"])
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(cached["tokenizer_config"]["tokenizer_dir"])

    def __call__(self, batch):
        inputs = self.tokenizer(batch["data"].tolist(), return_tensors="pt", padding=True)
        with torch.no_grad():
            hidden = self.model(**inputs).last_hidden_state
        batch["vec"] = hidden.mean(dim=1).tolist()
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Embed)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""
NS_PIPELINE = """
from engine.models import load_namespace_model
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Scale:
    def __init__(self, config):
        self.weights = load_namespace_model("head_1_0_0")

    def __call__(self, batch):
        w = self.weights["w"].tolist()
        batch["vec"] = [[len(t) * x for x in w] for t in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Scale)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""
PEEK_PIPELINE = """
import os
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Peek:
    def __init__(self, config):
        pass

    def __call__(self, batch):
        open(PATH, "rb").read()
        batch["vec"] = [[1.0, 1.0, 1.0] for _ in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=[StepDefinition(service_class=Peek)]))}
"""
TEXTS = ["penguins live in antarctica", "sold shares"]


def shipment(directory: Path, name: str, namespace_id: str | None) -> ModelShipment:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    data = {p.relative_to(directory).as_posix(): p.read_bytes() for p in files}
    manifest = ModelManifest(
        name=name,
        revision="r1",
        namespace_id=namespace_id,
        files=[ModelFile(path=k, sha256=hashlib.sha256(v).hexdigest(), size_bytes=len(v)) for k, v in data.items()],
    )
    return ModelShipment(manifest, {hashlib.sha256(v).hexdigest(): v for v in data.values()})


def run(archive: bytes, node: NodeModels, namespace_id: str, tmp: Path, shipments: list[ModelShipment]):  # type: ignore[no-untyped-def]
    own = install_models(node, shipments, lambda b: b, namespace_id)
    config = SandboxConfig(memory_bytes=3 * 1024**3, frame_cpu_seconds=60, namespace_models=str(own))
    worker = SandboxedWorker("toy_1_0_0", archive, None, str(tmp), str(node.hf_home), config)
    try:
        return worker.load_error, (worker.process(frame(TEXTS)) if worker.load_error is None else None)
    finally:
        worker.close()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeModels:
    layout = NodeModels(tmp_path / "models", tmp_path / "models-namespaces", 10**9)
    for key, value in offline_env(layout.hf_home).items():  # as the service gives its actors
        monkeypatch.setenv(key, value)
    return layout


def test_a_cluster_model_loads_with_load_hf_model_inside_the_sandbox(
    node: NodeModels, tiny_bert: Path, tmp_path: Path
) -> None:
    archive = toy_archive(HF_PIPELINE, MANIFEST.replace("DIM", "8"))
    error, output = run(archive, node, "ns_a", tmp_path / "w", [shipment(tiny_bert, "acme/tiny-bert", None)])
    assert error is None and output.failures == [], (error, output and output.failures)
    inside = np.array(from_parquet(output.vectors_parquet)["vec"].tolist())
    from transformers import AutoTokenizer, BertModel

    model, tokenizer = BertModel.from_pretrained(tiny_bert).eval(), AutoTokenizer.from_pretrained(tiny_bert)
    with torch.no_grad():
        outside = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).last_hidden_state.mean(dim=1)
    np.testing.assert_allclose(inside, outside.numpy(), atol=1e-5)


def test_a_model_the_registry_lacks_fails_the_load_naming_the_import_command(node: NodeModels, tmp_path: Path) -> None:
    archive = toy_archive(HF_PIPELINE, MANIFEST.replace("DIM", "8"))
    error, _ = run(archive, node, "ns_a", tmp_path / "w", [])
    assert error is not None and "acme/tiny-bert" in error.message
    assert "featurebus models import acme/tiny-bert --from" in f"{error.message} {error.hint}"


def test_namespace_weights_load_as_a_state_dict_and_only_in_their_namespace(node: NodeModels, tmp_path: Path) -> None:
    weights = tmp_path / "head"
    weights.mkdir()
    save_file({"w": torch.tensor([1.0, 2.0, 3.0])}, str(weights / "model.safetensors"))
    archive = toy_archive(NS_PIPELINE, MANIFEST.replace("DIM", "3"))
    error, output = run(archive, node, "ns_a", tmp_path / "wa", [shipment(weights, "head_1_0_0", "ns_a")])
    assert error is None and output.failures == [], (error, output and output.failures)
    assert list(from_parquet(output.vectors_parquet)["vec"].tolist()[1]) == [11.0, 22.0, 33.0]
    # Namespace B's plugin, on the same node: the weights are not there for it...
    error, _ = run(archive, node, "ns_b", tmp_path / "wb", [])
    assert error is not None and "namespace model 'head_1_0_0' is not uploaded" in error.message
    assert "featurebus models upload head_1_0_0" in error.message
    # ...nor can it read them by their path on the node.
    stolen = node.namespace_dir("ns_a") / "head_1_0_0" / "files" / "model.safetensors"
    peek = toy_archive(PEEK_PIPELINE.replace("PATH", repr(str(stolen))), MANIFEST.replace("DIM", "3"))
    error, output = run(peek, node, "ns_b", tmp_path / "wc", [])
    assert error is None and len(output.failures) == len(TEXTS)
    assert output.failures[0].reason in ("sandbox_violation", "plugin_exception"), output.failures[0]
