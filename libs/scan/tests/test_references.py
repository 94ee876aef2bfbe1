"""The models and secrets a plugin names reach its manifest: what its workers are given."""

from __future__ import annotations

from scanner_fixtures import (
    QUICKSTART_CORE,
    QUICKSTART_MANIFEST,
    QUICKSTART_PIPELINE,
    QUICKSTART_REALTIME,
    archive,
)

from featurebus.scan import scan_archive

GUIDE_LOADERS = """
from engine.models import LazyModelMixin, lazy_model, load_hf_model, load_namespace_model
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, pipeline

SIGLIP = "google/siglip-base-patch16-224"


class Embedder(LazyModelMixin):
    model_id = "intfloat/multilingual-e5-large-instruct"
    model_class = "AutoModel"


class Processor:
    def __init__(self, config):
        self.config = config

    def _ensure_model_loaded(self):
        cached = load_hf_model(hf_model_id="BAAI/bge-small-en-v1.5", model_class="AutoModel")
        self._vision = AutoModel.from_pretrained(SIGLIP, cache_dir="/tmp/hf_cache")
        self._weights = load_namespace_model("my-fine-tuned-bert_1_0_0")
        self._st = SentenceTransformer("all-MiniLM-L6-v2")
        self._clf = pipeline("text-classification", model="distilbert/distilbert-base-uncased")
        self._dynamic = AutoModel.from_pretrained(self.config["model"])
        self._local = AutoModel.from_pretrained("./weights")
        return cached
"""


def _scan(files: dict[str, str]):  # type: ignore[no-untyped-def]
    report = scan_archive(archive(files))
    assert report.manifest is not None, report.lines()
    return report.manifest


def test_every_loading_pattern_of_the_guide_names_its_model() -> None:
    manifest = _scan(
        {"manifest.py": QUICKSTART_MANIFEST, "pipeline.py": QUICKSTART_PIPELINE, "processor.py": GUIDE_LOADERS}
    )
    assert manifest.models == [
        "BAAI/bge-small-en-v1.5",
        "all-MiniLM-L6-v2",  # sentence-transformers tries the bare name too
        "distilbert/distilbert-base-uncased",
        "google/siglip-base-patch16-224",  # through the module constant
        "intfloat/multilingual-e5-large-instruct",  # the LazyModelMixin's model_id
        "sentence-transformers/all-MiniLM-L6-v2",
    ]
    assert manifest.namespace_models == ["my-fine-tuned-bert_1_0_0"]


def test_the_quickstart_names_all_minilm() -> None:
    manifest = _scan(
        {
            "manifest.py": QUICKSTART_MANIFEST,
            "pipeline.py": QUICKSTART_PIPELINE,
            "processors/core.py": QUICKSTART_CORE,
            "realtime.py": QUICKSTART_REALTIME,
        }
    )
    assert "sentence-transformers/all-MiniLM-L6-v2" in manifest.models


def test_the_manifest_declares_the_models_code_computes() -> None:
    declared = QUICKSTART_MANIFEST + '\nmodels = ["org/picked-at-run-time"]\nnamespace_models = ["weights_2"]\n'
    manifest = _scan({"manifest.py": declared, "pipeline.py": QUICKSTART_PIPELINE})
    assert manifest.models == ["org/picked-at-run-time"]
    assert manifest.namespace_models == ["weights_2"]


def test_a_models_list_that_is_not_names_is_an_error_naming_it() -> None:
    bad = QUICKSTART_MANIFEST + "\nmodels = [1, 2]\n"
    report = scan_archive(archive({"manifest.py": bad, "pipeline.py": QUICKSTART_PIPELINE}))
    assert not report.passed
    assert any(v.code == "MAN040" and "models must be a list" in v.message for v in report.violations)


GUIDE_SECRETS = """
WEBHOOK_TOKEN = "WEBHOOK_TOKEN"


class MyProcessor:
    def __init__(self, config, secrets=None):
        self._secrets = secrets

    async def process(self, data):
        api_key = await self._secrets.get("EXTERNAL_API_KEY")
        token = await self._secrets.get(WEBHOOK_TOKEN)
        other = await self._secrets.get(data["computed"])
        cached = self.cache.get("NOT_A_SECRET")
        return api_key, token, other, cached


def build(container):
    return container.secrets.get("OPENAI_API_KEY")
"""


def test_the_secrets_a_plugin_reads_are_declared_for_an_admin_to_grant() -> None:
    manifest = _scan({"manifest.py": QUICKSTART_MANIFEST, "pipeline.py": QUICKSTART_PIPELINE, "p.py": GUIDE_SECRETS})
    # Constant names only (the computed one is the manifest's to declare); a cache's get is no secret.
    assert manifest.secrets == ["EXTERNAL_API_KEY", "OPENAI_API_KEY", "WEBHOOK_TOKEN"]


def test_the_manifest_declares_the_secrets_code_computes() -> None:
    declared = QUICKSTART_MANIFEST + '\nsecrets = ["PICKED_AT_RUN_TIME"]\n'
    manifest = _scan({"manifest.py": declared, "pipeline.py": QUICKSTART_PIPELINE})
    assert manifest.secrets == ["PICKED_AT_RUN_TIME"]


def test_a_secrets_list_that_is_not_names_is_an_error_naming_it() -> None:
    bad = QUICKSTART_MANIFEST + '\nsecrets = ["has space"]\n'
    report = scan_archive(archive({"manifest.py": bad, "pipeline.py": QUICKSTART_PIPELINE}))
    assert not report.passed
    assert any(v.code == "MAN041" and "secrets must be a list" in v.message for v in report.violations)


TORCHVISION = """
import torchvision
import torchvision.models as tvm
from torchvision import models
from torchvision.models import ResNet50_Weights, resnet50


class Processor:
    def _ensure_model_loaded(self):
        self.a = models.mobilenet_v2(pretrained=True)  # the guide's image classifier
        self.b = torchvision.models.resnet18(weights="DEFAULT")
        self.c = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
        self.d = tvm.efficientnet_b0(weights=None)  # random weights: nothing to ship
        self.e = models.vgg11()
"""


def test_torchvision_builders_asked_for_pretrained_weights_name_their_registry_model() -> None:
    manifest = _scan({"manifest.py": QUICKSTART_MANIFEST, "pipeline.py": QUICKSTART_PIPELINE, "vision.py": TORCHVISION})
    assert [m for m in manifest.models if m.startswith("torchvision/")] == [
        "torchvision/mobilenet_v2",
        "torchvision/resnet18",
        "torchvision/resnet50",
    ]
