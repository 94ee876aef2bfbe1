"""Models on the real stack: an operator imports a Hugging Face model with `featurebus models
import`, a namespace uploads its own weights with `featurebus models upload`, and the guide's
loaders find them on the workers — with no model hub — while another namespace cannot."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ._client import Api, cli
from ._retrieve import search_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "NAME"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": DIM, "distance_metric": "cosine"}]
"""
# The guide's load_hf_model pattern ("HuggingFace Models (Cluster-Cached)").
HUB_PIPELINE = """
import torch
from engine.models import load_hf_model
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from transformers import AutoTokenizer, BertConfig, BertModel

class Embed:
    def __init__(self, config):
        cached = load_hf_model(hf_model_id="MODEL", model_class="AutoModel", tokenizer_class="AutoTokenizer")
        self.model = BertModel(BertConfig.from_dict(cached["config"]))
        self.model.load_state_dict(cached["state_dict"])
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(cached["tokenizer_config"]["tokenizer_dir"])

    def __call__(self, batch):
        inputs = self.tokenizer(batch["data"].tolist(), return_tensors="pt", padding=True)
        with torch.no_grad():
            batch["vec"] = self.model(**inputs).last_hidden_state.mean(dim=1).tolist()
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Embed)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="NAME", version="1.0.0", steps=steps))}
"""
# The guide's "Custom S3 Models (Namespace-Scoped)" pattern.
NAMESPACE_PIPELINE = """
import torch
from engine.models import load_namespace_model
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Project:
    def __init__(self, config):
        self._model = torch.nn.Linear(2, 3, bias=False)
        self._model.load_state_dict(load_namespace_model("head_1_0_0"))

    def __call__(self, batch):
        x = torch.tensor([[float(len(t)), 5.0 * t.count("s")] for t in batch["data"]])
        with torch.no_grad():
            batch["vec"] = self._model(x).tolist()
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Project)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="NAME", version="1.0.0", steps=steps))}
"""
TEXTS = ["penguins live in antarctica", "sold shares", "penguins sold"]


def plugin_zip(name: str, pipeline: str, dim: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/manifest.py", MANIFEST.replace("NAME", name).replace("DIM", str(dim)))
        zf.writestr(f"{name}/pipeline.py", pipeline.replace("NAME", name))
    return buffer.getvalue()


def batch(api: Api, ns: str, name: str, archive: bytes) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Upload and deploy the plugin, run it over TEXTS; (collection_id, batch, failed rows)."""
    plugin_id = api.upload_plugin(ns, name, "1.0.0", archive)
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    return api.run_collection(ns, name, TEXTS)


def test_an_imported_hub_model_serves_the_guides_load_hf_model_and_a_missing_one_fails_loudly(
    api: Api, tiny_bert: Path
) -> None:
    repo_id = f"acme-{uuid.uuid4().hex[:6]}/tiny-bert"
    imported = cli(api, "models", "import", repo_id, "--from", str(tiny_bert), "--json")
    assert imported.returncode == 0, imported.stderr
    view = json.loads(imported.stdout)
    assert view["name"] == repo_id and view["status"] == "ready"
    listed = cli(api, "models", "list", "--json")
    assert repo_id in {m["name"] for m in json.loads(listed.stdout)}

    ns = api.namespace(f"models-{uuid.uuid4().hex[:6]}")
    collection, done, failed = batch(
        api, ns, "tiny_hub", plugin_zip("tiny_hub", HUB_PIPELINE.replace("MODEL", repo_id), 8)
    )
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), (done, failed)
    # Searched through the same plugin: the scores are the imported model's own cosines (the
    # query embedded alone, as a query is; the documents in one padded batch, as the frame was).
    import torch
    from transformers import AutoTokenizer, BertModel

    model, tokenizer = BertModel.from_pretrained(tiny_bert).eval(), AutoTokenizer.from_pretrained(tiny_bert)
    with torch.no_grad():
        documents = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).last_hidden_state.mean(dim=1)
        query = model(**tokenizer(TEXTS[:1], return_tensors="pt")).last_hidden_state.mean(dim=1)[0]
    cosines = torch.nn.functional.cosine_similarity(documents, query[None, :]).tolist()
    expected = dict(zip(TEXTS, cosines, strict=True))
    results = search_everything(api, ns, collection, "mixpeek://tiny_hub@1.0.0/vec", TEXTS[0])
    assert sorted(r["text"] for r in results) == sorted(TEXTS)
    for result in results:
        assert result["score"] == pytest.approx(expected[result["text"]], abs=1e-3), (results, expected)

    # A plugin naming a model nobody imported: every row fails, naming the model and the command.
    ns2 = api.namespace(f"models-{uuid.uuid4().hex[:6]}")
    missing = HUB_PIPELINE.replace("MODEL", "acme/never-imported")
    _, done, failed = batch(api, ns2, "tiny_missing", plugin_zip("tiny_missing", missing, 8))
    assert done["status"] == "FAILED" and done["failure_summary"] == {"model_not_available": len(TEXTS)}
    assert "acme/never-imported" in failed[0]["message"]
    assert "featurebus models import acme/never-imported --from" in (failed[0].get("hint") or "")

    removed = cli(api, "models", "rm", repo_id)
    assert removed.returncode == 0, removed.stderr
    assert repo_id not in {m["name"] for m in json.loads(cli(api, "models", "list", "--json").stdout)}


def test_namespace_weights_load_with_load_namespace_model_only_in_their_namespace(api: Api, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    save_file({"weight": weights}, str(tmp_path / "model.safetensors"))
    ns = api.namespace(f"own-{uuid.uuid4().hex[:6]}")
    other = api.namespace(f"own-{uuid.uuid4().hex[:6]}")
    uploaded = cli(
        api,
        "models",
        "upload",
        "head_1_0_0",
        "--from",
        str(tmp_path / "model.safetensors"),
        "--namespace",
        ns,
        "--json",
    )
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["status"] == "ready"
    # A pickled checkpoint is refused before anything is stored.
    torch.save({"weight": weights}, tmp_path / "model.bin")
    refused = cli(api, "models", "upload", "head_2_0_0", "--from", str(tmp_path / "model.bin"), "--namespace", ns)
    assert refused.returncode == 1 and "safetensors" in refused.stdout + refused.stderr

    archive = plugin_zip("own_head", NAMESPACE_PIPELINE, 3)
    collection, done, failed = batch(api, ns, "own_head", archive)
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), (done, failed)
    results = search_everything(api, ns, collection, "mixpeek://own_head@1.0.0/vec", "sold shares")
    assert results[0]["text"] == "sold shares" and results[0]["score"] == pytest.approx(1.0, abs=1e-4)

    # The same plugin in another namespace: the weights are not there for it.
    assert other not in {m.get("namespace_id") for m in api.call("GET", f"/v1/namespaces/{ns}/models")["models"]}
    assert api.call("GET", f"/v1/namespaces/{other}/models")["models"] == []
    _, done, failed = batch(api, other, "own_head", archive)
    assert done["failure_summary"] == {"model_not_available": len(TEXTS)}
    assert "namespace model 'head_1_0_0' is not uploaded" in failed[0]["message"]


# The guide's image classifier's model line, unchanged: models.mobilenet_v2(pretrained=True).
VISION_PIPELINE = """
import numpy as np
import torch
from PIL import Image
from torchvision import models, transforms
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Classify:
    def __init__(self, config=None):
        self._model = None

    def _ensure_model_loaded(self):
        if self._model is None:
            self._model = models.ARCH(pretrained=True)
            self._model.eval()
            self._preprocess = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])

    def __call__(self, batch):
        self._ensure_model_loaded()
        images = [Image.fromarray(np.full((240, 320, 3), (20 * len(t)) % 256, np.uint8)) for t in batch["data"]]
        with torch.no_grad():
            outputs = self._model(torch.stack([self._preprocess(i) for i in images]))
        batch["vec"] = [o.tolist()[:4] for o in outputs]
        batch["labels"] = [[str(c) for c in torch.topk(o, 5).indices.tolist()] for o in outputs]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Classify)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="NAME", version="1.0.0", steps=steps))}
"""


def test_torchvisions_pretrained_weights_come_from_the_registry_and_missing_ones_fail_loudly(
    api: Api, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import models, transforms

    # An operator's copy of torchvision's weights file (random weights here: no download.pytorch.org).
    torch.manual_seed(11)
    reference = models.mobilenet_v2(weights=None).eval()
    weights = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(reference.state_dict(), weights)
    imported = cli(api, "models", "import", "torchvision/mobilenet_v2", "--from", str(weights), "--json")
    assert imported.returncode == 0, imported.stderr
    assert "converted mobilenet_v2-b0353104.pth" in imported.stderr
    assert [f["path"] for f in json.loads(imported.stdout)["files"]] == ["mobilenet_v2-b0353104.safetensors"]

    ns = api.namespace(f"vision-{uuid.uuid4().hex[:6]}")
    pipeline = VISION_PIPELINE.replace("ARCH", "mobilenet_v2")
    collection, done, failed = batch(api, ns, "classifier", plugin_zip("classifier", pipeline, 4))
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), [f.get("message") for f in failed[:1]]
    preprocess = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    with torch.no_grad():
        images = [preprocess(Image.fromarray(np.full((240, 320, 3), (20 * len(t)) % 256, np.uint8))) for t in TEXTS]
        outputs = reference(torch.stack(images))
    expected = {t: [str(c) for c in torch.topk(o, 5).indices.tolist()] for t, o in zip(TEXTS, outputs, strict=True)}
    results = search_everything(api, ns, collection, "mixpeek://classifier@1.0.0/vec", TEXTS[0])
    assert {r["text"]: r["labels"] for r in results} == expected  # the imported weights, not random ones

    # Weights nobody imported: every row fails model_not_available, naming the file and the command.
    missing = VISION_PIPELINE.replace("ARCH", "resnet18")
    _, done, failed = batch(api, ns, "classifier18", plugin_zip("classifier18", missing, 4))
    assert done["failure_summary"] == {"model_not_available": len(TEXTS)}, (done, failed)
    assert "resnet18-f37072fd.pth" in failed[0]["message"]
    assert "featurebus models import torchvision/resnet18 --from resnet18-f37072fd.pth" in (failed[0].get("hint") or "")


def test_a_model_nobody_imported_is_fetched_from_the_hub_once_for_the_whole_installation(
    api: Api, model_hub: Any
) -> None:
    repo_id = "hubowner/tiny-bert"
    weights = f"{repo_id}/model.safetensors"
    before = model_hub.downloads.get(weights, 0)  # the session's hub serves other tests too
    pipeline = HUB_PIPELINE.replace("MODEL", repo_id)
    for name in ("hub_first", "hub_second"):  # two namespaces, two plugins naming one model
        ns = api.namespace(f"hub-{uuid.uuid4().hex[:6]}")
        _, done, failed = batch(api, ns, name, plugin_zip(name, pipeline, 8))
        assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), (done, failed[:1])
    listed = {m["name"]: m for m in json.loads(cli(api, "models", "list", "--json").stdout)}
    assert listed[repo_id]["status"] == "ready" and listed[repo_id]["source"] == f"hub:{model_hub.url}"
    assert model_hub.downloads[weights] == before + 1  # once, for both plugins and every worker
