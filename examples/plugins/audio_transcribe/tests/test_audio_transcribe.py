"""The audio plugin through the plugin host, as a worker runs it (the guide's Local Testing).

``fixtures/weather_forecast.wav`` is 4.6 s of 16 kHz mono speech made once with espeak-ng:
"The weather forecast says heavy rain will fall in London tomorrow morning."
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus.common.events import ReasonCode
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime import HostResult, PluginError, PluginHost
from featurebus.sdk.model_loading import offline_env, seed_offline_models

PLUGIN = Path(__file__).resolve().parents[1]
SPEECH = PLUGIN / "tests" / "fixtures" / "weather_forecast.wav"
SPOKEN = "The weather forecast says heavy rain will fall in London tomorrow morning."
FEATURE = "audio_transcribe_v1_embedding"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PluginHost:
    cache = tmp_path_factory.mktemp("models")
    seed_offline_models(cache)
    os.environ.update(offline_env(cache))
    return PluginHost.load(PLUGIN, plugin_id="audio_transcribe_1_0_0")


def run(host: PluginHost, rows: list[tuple[str, str]]) -> HostResult:
    frame = []
    for i, (data, mime) in enumerate(rows):
        row: dict[str, object] = {c: f"{c}_{i}" for c, kind in FRAME_COLUMNS.items() if kind == "str"}
        row.update(data=data, blob_type=mime.split("/")[0], mime_type=mime, size_bytes=0)
        frame.append(row)
    return host.run(pd.DataFrame(frame))


def payload(result: HostResult, document_id: str) -> dict[str, object]:
    [raw] = result.vectors.loc[result.vectors["document_id"] == document_id, "payload"]
    return json.loads(raw)


def vector(result: HostResult, document_id: str) -> np.ndarray:
    [value] = result.vectors.loc[result.vectors["document_id"] == document_id, FEATURE]
    return np.asarray(value)


def test_the_fixture_is_small_16_khz_mono_speech() -> None:
    import wave

    with wave.open(str(SPEECH)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert 3 < wav.getnframes() / 16000 < 10
    assert SPEECH.stat().st_size < 200_000


@pytest.mark.slow
def test_speech_is_transcribed_embedded_and_found_by_a_text_query(host: PluginHost) -> None:
    result = run(host, [(str(SPEECH), "audio/wav")])

    assert result.failures == [] and result.rows_embedded == 1
    transcription = str(payload(result, "document_id_0")["transcription"]).lower()
    for word in ("weather", "forecast", "heavy rain", "london", "tomorrow morning"):
        assert word in transcription, transcription
    audio = vector(result, "document_id_0")
    assert audio.shape == (384,) and np.isfinite(audio).all()
    assert np.linalg.norm(audio) == pytest.approx(1.0, abs=1e-3)

    # Queries are embedded through the plugin's own steps, as the retriever does.
    spoken = np.asarray(host.embed_query(SPOKEN)[FEATURE])
    paraphrase = np.asarray(host.embed_query("will it rain in London tomorrow?")[FEATURE])
    unrelated = np.asarray(host.embed_query("quarterly tax filing deadlines for small businesses")[FEATURE])
    assert audio @ spoken > 0.8
    assert audio @ spoken > audio @ unrelated + 0.5
    assert audio @ paraphrase > audio @ unrelated + 0.3


@pytest.mark.slow
def test_rows_that_are_not_audio_skip_the_transcription(host: PluginHost, tmp_path: Path) -> None:
    """IS_AUDIO skips them (the guide): text is embedded as it is, a row with no text gets no vector."""
    picture = tmp_path / "cover.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n not transcribed")
    result = run(
        host,
        [
            ("heavy rain in London tomorrow", "text/plain"),
            (f"file://{SPEECH}", "audio/x-wav"),
            (str(picture), "image/png"),
        ],
    )

    assert sorted(result.vectors["document_id"]) == ["document_id_0", "document_id_1"]
    text = payload(result, "document_id_0")
    assert text["transcription"] == text["text"] == "heavy rain in London tomorrow"
    query = host.embed_query("heavy rain in London tomorrow")[FEATURE]
    assert np.allclose(vector(result, "document_id_0"), query, atol=1e-5)
    [image] = result.failures
    assert image.document_id == "document_id_2" and image.reason is ReasonCode.NULL_OUTPUT


@pytest.mark.slow
def test_unreadable_audio_fails_only_its_row_and_is_not_embedded(host: PluginHost, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"these bytes are not audio " * 100)
    missing = f"file://{tmp_path}/missing.mp3"
    result = run(host, [(str(corrupt), "audio/wav"), (str(SPEECH), "audio/wav"), (missing, "audio/mpeg")])

    assert result.rows_in == 3 and result.vectors["document_id"].tolist() == ["document_id_1"]
    failed = {f.document_id: f for f in result.failures}
    assert sorted(failed) == ["document_id_0", "document_id_2"]
    for doc, url in [("document_id_0", str(corrupt)), ("document_id_2", missing)]:
        assert failed[doc].reason is ReasonCode.UNREADABLE_ASSET
        assert url in failed[doc].message


def test_only_the_whisper_model_that_ships_here_is_offered() -> None:
    """The guide's large-v3-turbo id is not silently mapped to tiny.en: loading says what exists."""
    with pytest.raises(PluginError, match=r"openai/whisper-large-v3-turbo.*openai/whisper-tiny\.en"):
        PluginHost.load(
            PLUGIN, plugin_id="audio_transcribe_turbo", parameters={"whisper_model": "openai/whisper-large-v3-turbo"}
        )
