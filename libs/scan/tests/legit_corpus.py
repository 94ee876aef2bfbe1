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

# Everyday code the scan must leave alone (issue 8): each is scanned as processors/core.py of a valid plugin.
ORDINARY: list[tuple[str, str]] = [
    (
        "sys version and platform checks",
        """
import sys

PY311 = sys.version_info >= (3, 11)
ON_LINUX = sys.platform.startswith("linux")
BIG = sys.maxsize > 2**32


class Processor:
    def __init__(self, config=None):
        if sys.version_info < (3, 10):
            raise RuntimeError(f"needs Python 3.10+, not {sys.version}")
        self.config = config or {}

    def __call__(self, batch):
        print(f"{len(batch)} rows", file=sys.stderr)
        batch["size"] = [sys.getsizeof(t) for t in batch["data"]]
        return batch
""",
    ),
    (
        "ast.literal_eval of a parameter",
        """
import ast
from ast import literal_eval


class Processor:
    def __init__(self, config=None):
        self.config = config or {}
        self.labels = ast.literal_eval(self.config.get("labels", "['a', 'b']"))
        self.weights = literal_eval("{'a': 1.0}")

    def __call__(self, batch):
        batch["label"] = self.labels[0]
        return batch
""",
    ),
    (
        "importlib.metadata version lookups",
        """
import importlib.metadata
from importlib import metadata
from importlib.metadata import PackageNotFoundError, version

import importlib.metadata as md

TORCH = importlib.metadata.version("torch")
NUMPY = metadata.version("numpy")
PANDAS = md.version("pandas")


def optional(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Processor:
    def __call__(self, batch):
        batch["versions"] = f"{TORCH} {NUMPY} {PANDAS} {optional('polars')}"
        return batch
""",
    ),
    (
        "self.__class__.__name__ and type(self).__name__",
        """
import logging

log = logging.getLogger(__name__)


class Processor:
    def __init__(self, config=None):
        self.config = config
        self.name = self.__class__.__name__
        self.qualified = f"{type(self).__module__}.{type(self).__qualname__}"

    def __repr__(self):
        return f"{self.__class__.__name__}({self.config!r})"

    def __call__(self, batch):
        log.info("%s got %d rows", self.__class__.__qualname__, len(batch))
        batch["processor"] = self.name
        return batch
""",
    ),
    (
        "getattr(obj, name, default) on own objects and config",
        """
from dataclasses import dataclass, fields


@dataclass
class Config:
    threshold: float = 0.5
    model_name: str = "all-MiniLM-L6-v2"


class Processor:
    OPTIONS = ("threshold", "model_name")

    def __init__(self, config=None, **kwargs):
        self.config = config or Config()
        for key in self.OPTIONS:
            value = kwargs.get(key, getattr(self.config, key, None))
            if value is not None:
                self.config = Config(**{**{f.name: getattr(self.config, f.name) for f in fields(Config)}, key: value})

    def option(self, name, default=None):
        return getattr(self.config, name, default)

    def hook(self, name):
        handler = getattr(self, f"on_{name}", None)
        return handler() if callable(handler) else None

    def on_start(self):
        return "started"

    def __call__(self, batch):
        batch["threshold"] = self.option("threshold", 0.5)
        batch["has_model"] = hasattr(self, "_model")
        return batch
""",
    ),
    (
        "os the way the guide uses it: unlink downloads, environ reads, paths",
        """
import os

from shared.plugins import download_asset

HERE = os.path.dirname(os.path.abspath(__file__))


class Processor:
    def __init__(self, config=None):
        self.device = os.environ.get("DEVICE", "cpu")
        self.vocab = os.path.join(HERE, "vocab.txt")
        self.workers = min(8, os.cpu_count() or 1)

    def _size(self, url):
        path, is_temp = download_asset(url, suffix=".jpg")
        try:
            return os.path.getsize(path) if os.path.exists(path) else 0
        finally:
            if is_temp:
                os.unlink(path)

    def __call__(self, batch):
        os.makedirs(os.path.join("/tmp", "work"), exist_ok=True)
        batch["size"] = [self._size(u) for u in batch["data"]]
        return batch
""",
    ),
    (
        "dtype tables and getattr of a constant on a library",
        """
import numpy as np
import torch

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
NP_TYPES = {"f4": np.float32, "f8": np.float64}
HALF = getattr(torch, "float16")


class Processor:
    def __init__(self, config=None):
        self.config = config or {}
        self.dtype = DTYPES[self.config.get("dtype", "float32")]

    def __call__(self, batch):
        vectors = np.zeros((len(batch), 384), dtype=NP_TYPES["f4"])
        batch["legit_embedding"] = torch.from_numpy(vectors).to(self.dtype).float().tolist()
        return batch
""",
    ),
    (
        "operator getters and functools on plain values",
        """
import functools
import operator
from dataclasses import dataclass


@dataclass
class Hit:
    path: str
    score: float


by_score = operator.attrgetter("score")
by_path = operator.attrgetter("path")
first = operator.itemgetter(0)
strip = operator.methodcaller("strip")
execute = operator.methodcaller("execute")


@functools.lru_cache(maxsize=128)
def tokens(text):
    return tuple(text.split())


class Processor:
    def __call__(self, batch):
        hits = sorted([Hit("a", 1.0), Hit("b", 2.0)], key=by_score)
        clean = list(map(strip, batch["data"]))
        add_one = functools.partial(operator.add, 1)
        batch["best"] = by_path(hits[-1])
        batch["n"] = [add_one(len(tokens(t))) for t in clean]
        batch["total"] = functools.reduce(operator.add, [1, 2, 3])
        return batch
""",
    ),
    (
        "settings the libraries document, and own-class attributes",
        """
import logging

import pandas as pd
import torch
from PIL import Image, ImageFile

torch.backends.cudnn.benchmark = True
torch.set_num_threads(2)
pd.options.mode.chained_assignment = None
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = True
logging.getLogger("transformers").setLevel(logging.ERROR)


class Registry:
    handlers = {}

    @classmethod
    def register(cls, name):
        def deco(fn):
            cls.handlers[name] = fn
            return fn

        return deco


@Registry.register("upper")
def upper(text):
    return text.upper()


class Processor:
    calls = 0

    def __call__(self, batch):
        Processor.calls += 1
        self.last = len(batch)
        batch["upper"] = [Registry.handlers["upper"](t) for t in batch["data"]]
        return batch
""",
    ),
    (
        "threads, thread pools and asyncio without processes",
        """
import asyncio
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx


async def fetch_all(urls):
    async with httpx.AsyncClient(timeout=10) as client:
        return await asyncio.gather(*(client.get(u) for u in urls), return_exceptions=True)


class Processor:
    def __call__(self, batch):
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(len, t) for t in batch["data"]]
            lengths = [f.result() for f in as_completed(futures)]
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
        batch["n"] = sorted(lengths)
        return batch
""",
    ),
    (
        "types and string helpers",
        """
import string
import types

ALPHABET = string.ascii_lowercase + string.digits
GREETING = string.Template("hello $name").substitute(name="x")


class Processor:
    def __call__(self, batch):
        row = types.SimpleNamespace(n=len(batch))
        batch["n"] = row.n
        batch["clean"] = ["".join(c for c in t.lower() if c in ALPHABET) for t in batch["data"]]
        return batch
""",
    ),
    (
        "os.environ read into json through a table of lambdas",
        """
import json
import os

REPORTS = {
    "env": lambda arg: json.dumps(dict(os.environ)),
    "one": lambda arg: os.environ.get(arg, ""),
    "keys": lambda arg: json.dumps(sorted(os.environ)),
}


class Processor:
    def __call__(self, batch):
        found = []
        for text in batch["data"]:
            name, _, arg = str(text).partition(" ")
            found.append(REPORTS[name](arg))
        batch["found"] = found
        return batch
""",
    ),
    (
        "decompressing bytes and BytesIO",
        """
import gzip
import io
import zlib

import numpy as np


class Processor:
    def __call__(self, batch):
        blobs = [gzip.compress(t.encode()) for t in batch["data"]]
        texts = [gzip.decompress(b).decode() for b in blobs]
        with gzip.GzipFile(fileobj=io.BytesIO(blobs[0])) as f:
            head = f.read(4)
        arrays = [np.load(io.BytesIO(zlib.decompress(zlib.compress(b"")) or b"\\x93NUMPY"), allow_pickle=False)
                  for _ in []]
        batch["n"] = [len(t) + len(head) + len(arrays) for t in texts]
        return batch
""",
    ),
    (
        "torch module subclass with state and no_grad",
        """
import torch
import torch.nn.functional as F


class Head(torch.nn.Module):
    def __init__(self, dim=384):
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        return F.normalize(self.proj(x), dim=-1) * self.scale


class Processor:
    def __init__(self, config=None):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.head = Head().to(self.device).eval()

    def __call__(self, batch):
        with torch.no_grad():
            out = self.head(torch.zeros(len(batch), 384, device=self.device))
        batch["legit_embedding"] = out.cpu().tolist()
        return batch
""",
    ),
]

LEGIT += [(name, plugin(source)) for name, source in ORDINARY]

# The guide's batch-processing patterns, as the guide writes them (names of undefined helpers kept).
GUIDE_PATTERNS: list[tuple[str, str]] = [
    (
        "guide: load assets in parallel, then unlink temp files",
        """
import pandas as pd
import torch
from shared.plugins import open_asset, download_asset
from shared.plugins.sdk import parallel_io


class MyImageProcessor:
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        def load_image(url):
            from PIL import Image
            path, is_temp = download_asset(url, suffix=".jpg")
            img = Image.open(path).convert("RGB")
            if is_temp:
                import os
                os.unlink(path)
            return img

        images = parallel_io(
            items=batch["data"].tolist(),
            process_fn=load_image,
            max_workers=8,
        )
        tensors = [self._preprocess(images[i]) for i in sorted(images)]
        embeddings = self._model(torch.stack(tensors))
        batch["embedding"] = embeddings.tolist()
        return batch


def single(url):
    from PIL import Image
    with open_asset(url, suffix=".jpg") as local_path:
        return Image.open(local_path)


def raw(row, process):
    local_path, is_temp = download_asset(row["data"], suffix=".mp4")
    try:
        return process(local_path)
    finally:
        if is_temp:
            import os
            os.unlink(local_path)
""",
    ),
    (
        "guide: video frames with parallel_io",
        """
import torch
from shared.plugins.sdk import parallel_io, download_asset


class VideoFrameProcessor:
    def __call__(self, batch):
        def extract_frames(url):
            path, is_temp = download_asset(url, suffix=".mp4")
            frames = ffmpeg_extract_frames(path)
            if is_temp:
                import os
                os.unlink(path)
            return frames

        frame_results = parallel_io(
            items=batch["data"].tolist(),
            process_fn=extract_frames,
            max_workers=8,
        )
        all_frames = []
        frame_map = []
        for i in sorted(frame_results):
            for frame in frame_results[i]:
                all_frames.append(self._preprocess(frame))
                frame_map.append(i)
        if all_frames:
            embeddings = self._model(torch.stack(all_frames))
        return batch
""",
    ),
    (
        "guide: allowed read-only builtins and os.environ reads",
        """
import os


class Processor:
    def __init__(self, config):
        model_name = getattr(config, "model_name", "default")
        if hasattr(self, "_model"):
            self._model.eval()
        self.names = dir(config)
        self.key = os.environ["KEY"] if "KEY" in os.environ else model_name
        self.path = os.path.join("a", "b")

    def __call__(self, batch):
        return batch
""",
    ),
    (
        "guide: E5 over HTTP with httpx",
        """
import httpx


async def embed_text(text: str) -> list[float]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            "http://localhost:8001/multilingual_e5_large_instruct/v1",
            json={"inputs": {"texts": [text]}, "parameters": {}}
        )
        return response.json()["embeddings"][0]


class Processor:
    def __call__(self, batch):
        return batch
""",
    ),
]

LEGIT += [(name, plugin(source)) for name, source in GUIDE_PATTERNS]

# Everyday library code (issue 8 false-positive review): each is processors/core.py of a valid plugin.
EVERYDAY: list[tuple[str, str]] = [
    (
        "transformers embedder with threads, asyncio and json",
        'import logging, sys, json, functools, asyncio, threading\nimport numpy as np, torch, pandas as pd\nfrom transformers import AutoModel, AutoTokenizer\nlog = logging.getLogger(__name__)\nlog.addHandler(logging.StreamHandler(sys.stderr))\nclass P:\n    def __init__(self, config=None):\n        self.config = config or {}\n        self.tok = AutoTokenizer.from_pretrained("x", use_fast=True)\n        self.model = AutoModel.from_pretrained("x", torch_dtype=torch.float16).eval()\n        self.model.config.output_hidden_states = True\n        self.lock = threading.Lock()\n        self.t = threading.Thread(target=self.warm, daemon=True)\n    def warm(self):\n        pass\n    @functools.cached_property\n    def dim(self):\n        return self.model.config.hidden_size\n    def __call__(self, batch):\n        texts = batch["data"].fillna("").astype(str).tolist()\n        enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True)\n        with torch.inference_mode():\n            out = self.model(**enc).last_hidden_state.mean(dim=1)\n        arr = out.float().numpy()\n        arr /= np.linalg.norm(arr, axis=1, keepdims=True)\n        batch["e"] = list(arr)\n        batch["meta"] = [json.dumps({"n": len(t)}, default=str) for t in texts]\n        batch = pd.concat([batch], ignore_index=True)\n        r = asyncio.run(asyncio.to_thread(len, texts))\n        isinstance(arr, (np.ndarray, torch.Tensor))\n        return batch',
    ),
    (
        "torch settings and seeds",
        "import torch\ntorch.backends.cuda.matmul.allow_tf32 = True\ntorch.manual_seed(0)\ntorch.set_default_dtype(torch.float32)",
    ),
    (
        "numpy generators and buffers",
        'import numpy as np\nrng = np.random.default_rng(0)\nf = np.vectorize(len)\nx = np.frombuffer(b"\\x00" * 8, dtype=np.float32)',
    ),
    (
        "pydantic validators",
        'from pydantic import BaseModel, Field, field_validator\nclass Params(BaseModel):\n    name: str = Field(default="x")\n    @field_validator("name")\n    @classmethod\n    def check(cls, v):\n        return v.strip()\np = Params.model_validate({"name": "a"})\nd = p.model_dump()',
    ),
    (
        "dataclasses helpers",
        "import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass C:\n    a: int = 1\nc = dataclasses.replace(C(), a=2)\nd = dataclasses.asdict(c)",
    ),
    (
        "cv2 decoding from bytes",
        'import cv2, numpy as np\nimg = cv2.imdecode(np.frombuffer(b"", np.uint8), cv2.IMREAD_COLOR)\ncv2.setNumThreads(0)',
    ),
    (
        "librosa and soundfile from bytes",
        'import librosa, soundfile as sf, io\ny, sr = librosa.load(io.BytesIO(b""), sr=16000)\ndata, rate = sf.read(io.BytesIO(b""))',
    ),
    (
        "onnxruntime session options",
        'import onnxruntime as ort\nso = ort.SessionOptions()\nso.intra_op_num_threads = 1\nsess = ort.InferenceSession("m.onnx", sess_options=so, providers=["CPUExecutionProvider"])',
    ),
    (
        "sentence-transformers settings on its own instance",
        'from sentence_transformers import SentenceTransformer\nimport torch\nclass P:\n    def __init__(self):\n        self.m = SentenceTransformer("all-MiniLM-L6-v2", device="cuda" if torch.cuda.is_available() else "cpu")\n        self.m.max_seq_length = 256',
    ),
    (
        "device choice from sys and os.environ",
        'import os, sys\nif sys.platform == "darwin":\n    DEVICE = "mps"\nelif os.environ.get("CUDA_VISIBLE_DEVICES"):\n    DEVICE = "cuda"\nelse:\n    DEVICE = "cpu"',
    ),
    (
        "guide: os.environ for device and runtime configuration",
        'import os\nos.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"\nos.environ.setdefault("TOKENIZERS_PARALLELISM", "false")\nos.environ.update({"OMP_NUM_THREADS": "1"})\nos.environ.pop("HF_TOKEN", None)',
    ),
    (
        "TYPE_CHECKING imports and get_type_hints",
        'import typing\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas as pd\ndef f(b: "pd.DataFrame") -> "pd.DataFrame":\n    return b\nhints = typing.get_type_hints(f)',
    ),
    (
        "logging filter subclass",
        'import logging\nclass Quiet(logging.Filter):\n    def filter(self, record):\n        return record.levelno >= logging.WARNING\nlogging.getLogger("httpx").addFilter(Quiet())',
    ),
    (
        "re and unicodedata",
        'import re, unicodedata\ndef norm(t):\n    return re.sub(r"\\s+", " ", unicodedata.normalize("NFKC", t)).strip()',
    ),
    (
        "DataLoader without workers",
        "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\ndl = DataLoader(TensorDataset(torch.zeros(3)), batch_size=2)",
    ),
    (
        "PIL helpers",
        "import PIL.Image\nfrom PIL import ImageOps\ndef thumb(img):\n    return ImageOps.exif_transpose(img).resize((224, 224), PIL.Image.BICUBIC)",
    ),
]

LEGIT += [(name, plugin(source)) for name, source in EVERYDAY]

assert len(LEGIT) >= 25, len(LEGIT)
