"""Plugins that must pass: the guide's examples and the everyday patterns the guide allows."""

from __future__ import annotations

from scanner_fixtures import (
    IMAGE_MANIFEST,
    IMAGE_PIPELINE,
    IMAGE_PROCESSOR,
    SECRETS_PIPELINE,
    quickstart,
)


def manifest(name: str = "legit", dim: int = 384) -> str:
    return f'''
feature_extractor_name = "{name}"
version = "1.0.0"
features = [{{"feature_type": "embedding", "feature_name": "{name}_embedding", "embedding_dim": {dim}, "distance_metric": "cosine"}}]
compute_profile = {{"resource_type": "cpu", "batch_size": 32, "max_concurrency": 2}}
'''


PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps
from .processors.core import Processor


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    params = extractor_request.extractor_config.parameters or {}
    step = StepDefinition(service_class=Processor, resource_type=ResourceType.CPU, config=params)
    return {"steps": build_pipeline_steps(PipelineDefinition(name="legit", version="1.0.0", steps=[step]))}
"""


def plugin(core: str, **extra: str) -> dict[str, str]:
    return {
        "manifest.py": manifest(),
        "pipeline.py": PIPELINE,
        "processors/__init__.py": "",
        "processors/core.py": core,
        **extra,
    }


VLM_PROCESSOR = """
import hashlib
import pandas as pd
from shared.plugins.sdk import concurrent_api_calls

class VLMAnalyzerProcessor:
    def __init__(self, config=None, **kwargs):
        self.config = config or {}
        self._llm = config.get("llm_service")

    def _text_to_embedding(self, text, dim=384):
        h = hashlib.sha256(text.encode()).digest()
        return [((b % 200) - 100) / 100.0 for b in (h * (dim // 32 + 1))[:dim]]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        image_urls = batch.get("source_url", pd.Series([""] * len(batch))).tolist()

        async def analyze_image(url):
            return await self._llm.generate(instruction="Describe", images=[url], provider="google", model="gemini-2.5-flash")

        results = concurrent_api_calls(items=image_urls, async_fn=analyze_image, max_concurrent=10)
        analyses = [r.data if r else {} for r in results]
        batch["legit_embedding"] = [self._text_to_embedding(a.get("description", "")) for a in analyses]
        return batch
"""

MULTISTAGE_PIPELINE = """
from shared.inference.registry import get_batch_service
from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)


def build_steps(extractor_request, **kwargs):
    params = extractor_request.extractor_config.parameters or {}
    WhisperBatch = get_batch_service("openai/whisper-large-v3-turbo")
    E5Batch = get_batch_service("intfloat/multilingual-e5-large-instruct")
    pipeline = PipelineDefinition(
        name="audio_to_embedding",
        version="v1",
        steps=[
            StepDefinition(
                service_class=WhisperBatch,
                resource_type=ResourceType.API,
                condition=RowCondition.IS_AUDIO,
                config={"output_column": "transcription"},
            ),
            StepDefinition(
                service_class=E5Batch,
                resource_type=ResourceType.CPU,
                config={"text_column": "transcription", "output_column_name": "legit_embedding"},
            ),
        ]
    )
    return {"steps": build_pipeline_steps(pipeline)}
"""

BRAND_PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps
from .processors.core import BrandComplianceProcessor


def build_steps(extractor_request, container=None, **kwargs):
    config = {"llm_service": container.llm, "threshold": 0.8}
    pipeline = PipelineDefinition(
        name="brand_compliance",
        version="v1",
        steps=[StepDefinition(service_class=BrandComplianceProcessor, resource_type=ResourceType.API, config=config)],
    )
    return {"steps": build_pipeline_steps(pipeline)}
"""

BRAND_PROCESSOR = """
from shared.plugins.sdk import concurrent_api_calls


class BrandComplianceProcessor:
    def __init__(self, config, **kwargs):
        self._llm = config.get("llm_service")
        self.threshold = config.get("threshold", 0.8)

    def __call__(self, batch):
        image_urls = batch["image_url"].tolist()

        async def evaluate_image(url):
            return await self._llm.generate(
                instruction="Evaluate this image for brand compliance",
                images=[url],
                provider="google",
                model="gemini-2.5-flash",
                schema={"type": "object", "properties": {"compliant": {"type": "boolean"}}},
            )

        results = concurrent_api_calls(items=image_urls, async_fn=evaluate_image, max_concurrent=10)
        batch["compliance_result"] = [r.data if r else {} for r in results]
        return batch
"""

LAZY_MIXIN = """
from engine.models import LazyModelMixin
from shared.plugins.inference.batch import BaseBatchInferenceService


class Processor(LazyModelMixin, BaseBatchInferenceService):
    model_id = "intfloat/multilingual-e5-large-instruct"
    model_class = "AutoModel"
    tokenizer_class = "AutoTokenizer"
    torch_dtype = "float16"

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def _process_batch(self, batch):
        model, tokenizer = self.get_model()
        texts = batch["data"].tolist()
        inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        outputs = model(**inputs)
        batch["legit_embedding"] = outputs.last_hidden_state.mean(dim=1).tolist()
        return batch
"""

LAZY_DECORATOR = """
from engine.models import lazy_model


class Processor:
    def __init__(self, config):
        self.config = config
        self._model = None
        self._tokenizer = None

    @lazy_model(model_id="intfloat/multilingual-e5-large-instruct", model_class="AutoModel", tokenizer_class="AutoTokenizer")
    def __call__(self, batch):
        inputs = self._tokenizer(batch["data"].tolist(), return_tensors="pt", padding=True)
        batch["legit_embedding"] = self._model(**inputs).last_hidden_state.mean(dim=1).tolist()
        return batch
"""

HF_CACHED = """
from engine.models import load_hf_model
from transformers import AutoConfig


class Processor:
    def __init__(self, config):
        self.config = config
        self._model = None

    def _ensure_model_loaded(self):
        if self._model is None:
            cached = load_hf_model(hf_model_id="intfloat/multilingual-e5-large-instruct", model_class="AutoModel",
                                   tokenizer_class="AutoTokenizer", torch_dtype="float16")
            from transformers import AutoModel, AutoTokenizer
            config = AutoConfig.from_dict(cached["config"])
            self._model = AutoModel(config)
            self._model.load_state_dict(cached["state_dict"])
            self._tokenizer = AutoTokenizer.from_pretrained(cached["tokenizer_config"]["tokenizer_dir"])

    def __call__(self, batch):
        self._ensure_model_loaded()
        batch["legit_embedding"] = [[0.0] * 384] * len(batch)
        return batch
"""

NAMESPACE_MODEL = """
import torch
from shared.models.loader import load_namespace_model


class Processor:
    def __init__(self, config):
        self._model = None

    def _ensure_model_loaded(self):
        if self._model is None:
            weights = load_namespace_model("my-fine-tuned-bert_1_0_0")
            self._model = torch.nn.Sequential(torch.nn.Linear(768, 256), torch.nn.ReLU(), torch.nn.Linear(256, 384))
            self._model.load_state_dict(weights)
            self._model.eval()

    def __call__(self, batch):
        self._ensure_model_loaded()
        batch["legit_embedding"] = [[0.0] * 384] * len(batch)
        return batch
"""


def core(body: str, imports: str = "import pandas as pd") -> str:
    return f"""{imports}


class Processor:
    def __init__(self, config=None, **kwargs):
        self.config = config or {{}}

    def __call__(self, batch):
{body}
        return batch
"""


LEGIT: list[tuple[str, dict[str, str]]] = [
    ("guide quickstart with realtime.py", quickstart()),
    (
        "guide quickstart, metadata-style manifest without realtime",
        {k: v for k, v in quickstart().items() if k != "realtime.py"},
    ),
    (
        "guide image classifier",
        {
            "manifest.py": IMAGE_MANIFEST,
            "pipeline.py": IMAGE_PIPELINE,
            "processors/__init__.py": "",
            "processors/classifier.py": IMAGE_PROCESSOR,
        },
    ),
    ("guide VLM analyzer", plugin(VLM_PROCESSOR.replace("VLMAnalyzerProcessor", "Processor"))),
    ("guide multi-stage with get_batch_service", {"manifest.py": manifest(), "pipeline.py": MULTISTAGE_PIPELINE}),
    ("guide secrets style", quickstart(**{"pipeline.py": SECRETS_PIPELINE})),
    ("guide brand compliance with container.llm", plugin(BRAND_PROCESSOR, **{"pipeline.py": BRAND_PIPELINE})),
    ("guide LazyModelMixin", plugin(LAZY_MIXIN)),
    ("guide @lazy_model", plugin(LAZY_DECORATOR)),
    ("guide load_hf_model", plugin(HF_CACHED)),
    ("guide load_namespace_model", plugin(NAMESPACE_MODEL)),
    (
        "getattr/hasattr/dir with constants",
        plugin(
            core(
                '        name = getattr(self.config, "model_name", "default")\n        if hasattr(self, "_model"):\n'
                '            pass\n        batch["names"] = [name] * len(batch)\n        _ = dir(self)'
            )
        ),
    ),
    (
        "os.path and os.environ reads",
        plugin(
            core(
                '        root = os.path.join(os.path.dirname(__file__), "assets")\n'
                '        device = os.environ.get("DEVICE", "cpu")\n        batch["root"] = root + device',
                "import os",
            )
        ),
    ),
    (
        "torch.load with weights_only=True",
        plugin(
            core(
                '        w = torch.load(os.path.join(os.path.dirname(__file__), "w.pt"), weights_only=True)\n'
                '        batch["n"] = len(w)',
                "import os\nimport torch",
            )
        ),
    ),
    (
        "onnxruntime session on a bundled model",
        plugin(
            core(
                '        s = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])\n'
                '        batch["inputs"] = [i.name for i in s.get_inputs()] * len(batch)',
                "import onnxruntime",
            )
        ),
    ),
    (
        "pd.read_csv of a bundled file",
        plugin(
            core(
                '        labels = pd.read_csv(os.path.join(os.path.dirname(__file__), "labels.csv"))\n'
                '        batch["label"] = labels["name"].iloc[0]',
                "import os\nimport pandas as pd",
            )
        ),
    ),
    (
        "json.loads of a constant config",
        plugin(
            core(
                '        cfg = json.loads(\'{"threshold": 0.5}\')\n        batch["t"] = cfg["threshold"]', "import json"
            )
        ),
    ),
    (
        "threads",
        plugin(
            core(
                "        results = []\n        t = threading.Thread(target=results.append, args=(1,))\n        t.start()\n"
                '        t.join()\n        batch["r"] = len(results)',
                "import threading",
            )
        ),
    ),
    (
        "parallel_io downloads with requests",
        plugin(
            core(
                "        def fetch(url):\n            return requests.get(url, timeout=10).content\n"
                '        got = parallel_io(batch["data"].tolist(), fetch, max_workers=8)\n        batch["ok"] = [i in got for i in range(len(batch))]',
                "import requests\nfrom shared.plugins.sdk import parallel_io",
            )
        ),
    ),
    (
        "polars and numpy",
        plugin(
            core(
                '        frame = pl.from_pandas(batch[["data"]])\n        batch["legit_embedding"] = np.zeros((frame.height, 384)).tolist()',
                "import numpy as np\nimport polars as pl",
            )
        ),
    ),
    (
        "dataclass config and enum",
        plugin("""
from dataclasses import dataclass
from enum import Enum


class Mode(Enum):
    FAST = "fast"


@dataclass
class Config:
    mode: Mode = Mode.FAST


class Processor:
    def __init__(self, config=None):
        self.config = Config()

    def __call__(self, batch):
        batch["mode"] = self.config.mode.value
        return batch
"""),
    ),
    (
        "open_asset and PIL on s3 images",
        plugin(
            core(
                '        sizes = []\n        for url in batch["data"].tolist():\n'
                '            with open_asset(url, suffix=".jpg") as path:\n                sizes.append(Image.open(path).size)\n'
                '        batch["size"] = sizes',
                "from PIL import Image\nfrom shared.plugins import open_asset",
            )
        ),
    ),
    (
        "io.BytesIO and base64",
        plugin(
            core(
                '        raw = [base64.b64decode(x) for x in batch["data"]]\n        batch["n"] = [len(io.BytesIO(r).read()) for r in raw]',
                "import base64\nimport io",
            )
        ),
    ),
    (
        "realtime with httpx and asyncio",
        {
            **plugin(core('        batch["x"] = 1')),
            "realtime.py": """
import asyncio
import httpx
from shared.plugins.inference.serve import BaseInferenceService


class InferenceService(BaseInferenceService):
    async def run_inference(self, inputs: dict, parameters: dict) -> dict:
        async with httpx.AsyncClient() as client:
            responses = await asyncio.gather(client.get("http://127.0.0.1:1/health"))
        return {"embedding": [0.0] * 384, "status": responses[0].status_code}
""",
        },
    ),
    (
        "logging, typing, re and math",
        plugin(
            core(
                '        log.info("batch of %d", len(batch))\n        batch["words"] = [len(re.findall(r"\\\\w+", t)) for t in batch["data"]]\n'
                '        batch["sqrt"] = [math.sqrt(n) for n in batch["words"]]',
                "import logging\nimport math\nimport re\nfrom typing import Any\n\nlog = logging.getLogger(__name__)",
            )
        ),
    ),
    (
        "package with __init__.py and absolute own imports",
        {
            **plugin(
                core('        batch["x"] = helpers.VALUE').replace(
                    "import pandas as pd", "from processors import helpers"
                )
            ),
            "__init__.py": "",
            "processors/helpers.py": "VALUE = 1\n",
        },
    ),
    (
        "featurebus.sdk native imports",
        plugin(
            core(
                '        batch["legit_embedding"] = [[0.0] * 384] * len(batch)',
                "from featurebus.sdk import parallel_io",
            )
        ),
    ),
]

assert len(LEGIT) >= 25, len(LEGIT)
