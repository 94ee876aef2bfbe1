"""The example plugin through the plugin host, as a worker runs it (the guide's Local Testing)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime import PluginHost
from featurebus.sdk.model_loading import offline_env, seed_offline_models

PLUGIN = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PluginHost:
    cache = tmp_path_factory.mktemp("models")
    seed_offline_models(cache)
    os.environ.update(offline_env(cache))
    return PluginHost.load(PLUGIN, plugin_id="text_embed_1_0_0")


def frame(texts: list[str]) -> pd.DataFrame:
    rows = []
    for i, text in enumerate(texts):
        row = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=text, blob_type="text", mime_type="text/plain", size_bytes=0)
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_embeds_every_row_as_a_384_d_unit_vector(host: PluginHost) -> None:
    texts = ["cats are lovely pets", "my kitten purrs", "quarterly tax filing"]
    result = host.run(frame(texts))
    assert result.failures == [] and result.rows_embedded == 3
    vectors = np.array(result.vectors["text_embed_v1_embedding"].tolist())
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    cats, kitten, tax = vectors
    assert cats @ kitten > cats @ tax + 0.2


@pytest.mark.slow
def test_model_loads_once_for_many_frames(host: PluginHost) -> None:
    for _ in range(3):
        assert host.run(frame(["one", "two"])).rows_embedded == 2
    assert host.model_loads == 1


@pytest.mark.slow
def test_query_goes_through_the_same_batch_step(host: PluginHost) -> None:
    query = host.embed_query("feline pets")["text_embed_v1_embedding"]
    row = host.run(frame(["feline pets"])).vectors.at[0, "text_embed_v1_embedding"]
    assert np.allclose(query, row, atol=1e-5)
