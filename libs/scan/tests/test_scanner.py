"""The scanner: the guide's plugins pass; unsafe archives, bad manifests and forbidden code fail with the fix."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from scanner_fixtures import (
    IMAGE_MANIFEST,
    IMAGE_PIPELINE,
    IMAGE_PROCESSOR,
    QUICKSTART_CORE,
    QUICKSTART_MANIFEST,
    QUICKSTART_PIPELINE,
    SECRETS_PIPELINE,
    archive,
    quickstart,
)

from featurebus.scan import scan_archive
from featurebus.scan.archive_checks import Limits

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "plugins"


def messages(report) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(report.lines())


def test_guide_quickstart_plugin_passes() -> None:
    report = scan_archive(archive(quickstart()), expected_name="my_extractor", expected_version="1.0.0")
    assert report.passed, messages(report)
    assert report.manifest.has_realtime and report.manifest.features[0].embedding_dim == 384


def test_guide_image_classifier_passes_with_a_feature_uri_warning_only_without_realtime() -> None:
    files = {
        "manifest.py": IMAGE_MANIFEST,
        "pipeline.py": IMAGE_PIPELINE,
        "processors/__init__.py": "",
        "processors/classifier.py": IMAGE_PROCESSOR,
    }
    report = scan_archive(archive(files))
    assert report.passed, messages(report)
    [warning, note] = report.violations
    assert warning.severity == "WARNING" and "realtime.py" in warning.message
    # its step is ResourceType.GPU in a default ("cpu") profile: honoured where GPUs exist, said
    assert note.severity == "INFO" and note.code == "MAN050" and "a GPU where the cluster has one" in note.message
    assert report.manifest is not None and report.manifest.compute_profile.step_resource_types == ["gpu"]


def test_guide_secrets_style_with_os_environ_and_getattr_passes() -> None:
    report = scan_archive(archive(quickstart(**{"pipeline.py": SECRETS_PIPELINE})))
    assert report.passed, messages(report)


def test_the_guides_environ_settings_pass_and_replacing_environ_does_not() -> None:
    # The guide allows os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1": a plugin runs in a sandboxed
    # process of its own, so its environment changes reach no other plugin (issue 8).
    pipeline = SECRETS_PIPELINE + '\nos.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"\n'
    report = scan_archive(archive(quickstart(**{"pipeline.py": pipeline})))
    assert report.passed, messages(report)
    replaced = scan_archive(archive(quickstart(**{"pipeline.py": SECRETS_PIPELINE + "\nos.environ = {}\n"})))
    assert not replaced.passed
    assert any("os.environ" in v.message and v.code == "SEC009" for v in replaced.violations), messages(replaced)


def test_repository_example_plugin_passes() -> None:
    root = EXAMPLES / "text_embed"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.py") if "tests" not in p.parts}
    report = scan_archive(archive(files, top="text_embed"), expected_name="text_embed", expected_version="1.0.0")
    assert report.passed, messages(report)


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("type", "feature_type"),
        ("name", "feature_name"),
        ("dimensions", "embedding_dim"),
        ("distance", "distance_metric"),
    ],
)
def test_the_guides_wrong_feature_keys_name_the_right_key(wrong: str, right: str) -> None:
    manifest = QUICKSTART_MANIFEST.replace(f'"{right}"', f'"{wrong}"')
    report = scan_archive(archive(quickstart(**{"manifest.py": manifest})))
    assert not report.passed
    assert any(
        f"'{wrong}'" in v.message and f"'{right}'" in v.message and v.filename == "manifest.py"
        for v in report.violations
    )


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ('"embedding_dim": 0', "embedding_dim"),
        ('"embedding_dim": "384"', "embedding_dim"),
        ('"distance_metric": "manhattan"', "distance_metric"),
    ],
)
def test_bad_feature_values_are_errors(replacement: str, expected: str) -> None:
    key = replacement.split(":")[0]
    line = next(ln for ln in QUICKSTART_MANIFEST.splitlines() if ln.strip().startswith(key))
    manifest = QUICKSTART_MANIFEST.replace(line.strip().rstrip(","), replacement)
    report = scan_archive(archive(quickstart(**{"manifest.py": manifest})))
    assert not report.passed and expected in messages(report)


def test_missing_features_would_index_nothing() -> None:
    manifest = QUICKSTART_MANIFEST.split("features = [")[0]
    report = scan_archive(archive(quickstart(**{"manifest.py": manifest})))
    assert not report.passed and "index 0 documents" in messages(report)


def test_versions_are_normalised_and_must_match_the_upload() -> None:
    manifest = QUICKSTART_MANIFEST.replace('"version": "1.0.0"', '"version": "v1"')
    report = scan_archive(archive(quickstart(**{"manifest.py": manifest})), expected_version="1.0.0")
    assert report.passed and report.manifest.version == "1.0.0"
    report = scan_archive(archive(quickstart()), expected_name="other_name")
    assert not report.passed and "other_name" in messages(report)


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("import subprocess", "subprocess"),
        ("import socket as s", "socket"),
        ("from ctypes import cdll", "ctypes"),
        ("import multiprocessing.pool", "multiprocessing"),
        ("import pickle", "pickle"),
        ("import importlib\nimportlib.import_module('subprocess')", "importlib"),
        ("x = eval('1+1')", "eval"),
        ("f = exec", "exec"),
        ("data = open('/etc/passwd').read()", "open"),
        ("setattr(object, 'x', 1)", "setattr"),
        ("m = __import__('os')", "__import__"),
        ("import os\nos.system('id')", "os.system"),
        ("import os as o\no.popen('id')", "os.popen"),
        ("import os\nlist(map(os.system, ['id']))", "os.system"),
        ("from os import system as log\nlog('id')", "os.system"),
        ("import os\nos.execv('/bin/sh', ['sh'])", "os.execv"),
        ("x = ().__class__.__bases__[0].__subclasses__()", "__subclasses__"),
    ],
)
def test_forbidden_code_is_rejected_with_file_and_line(code: str, needle: str) -> None:
    core = code + "\n" + QUICKSTART_CORE
    report = scan_archive(archive(quickstart(**{"processors/core.py": core})))
    assert not report.passed
    hits = [v for v in report.violations if needle in v.message]
    assert hits, messages(report)
    assert hits[0].filename == "processors/core.py" and hits[0].line >= 1
    assert str(hits[0]).startswith("processors/core.py:")


def test_unparseable_source_is_rejected() -> None:
    report = scan_archive(archive(quickstart(**{"processors/core.py": "def broken(:\n"})))
    assert not report.passed and "cannot parse" in messages(report)


def test_path_traversal_symlinks_and_missing_files() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in quickstart().items():
            zf.writestr(f"plugin/{name}", text)
        zf.writestr("../../etc/cron.d/evil", "x")
        link = zipfile.ZipInfo("plugin/link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    report = scan_archive(buffer.getvalue())
    text = messages(report)
    assert not report.passed and "'..'" in text and "symbolic link" in text

    no_pipeline = {k: v for k, v in quickstart().items() if k != "pipeline.py"}
    assert "pipeline.py is missing" in messages(scan_archive(archive(no_pipeline)))
    assert "not a zip" in messages(scan_archive(b"not a zip at all"))


def test_limits_are_judged_on_the_bytes_read() -> None:
    small = Limits(max_extracted=10_000, max_files=8)
    bomb = quickstart(**{"weights.bin": "0" * 50_000})
    assert "zip bomb" in messages(scan_archive(archive(bomb), limits=small))
    many = quickstart(**{f"data/{i}.txt": "x" for i in range(10)})
    assert "entries" in messages(scan_archive(archive(many), limits=small))


def test_a_highly_compressed_entry_is_a_bomb_by_ratio() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in quickstart(**{"data/zeros.txt": "0" * (3 * 1024 * 1024)}).items():
            zf.writestr(f"plugin/{name}", text)
    report = scan_archive(buffer.getvalue())
    assert not report.passed and "inflates more than 200x" in messages(report)


def _patch_second_central_entry_offset(data: bytes) -> bytes:
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    return data[: second + 42] + (0).to_bytes(4, "little") + data[second + 46 :]


def test_overlapping_entries_and_header_mismatches_are_rejected() -> None:
    overlapping = _patch_second_central_entry_offset(archive(quickstart()))
    assert "overlap" in messages(scan_archive(overlapping))

    good = archive(quickstart())
    local = good.index(b"PK\x03\x04")
    name_at = local + 30
    mismatched = good[:name_at] + b"X" + good[name_at + 1 :]  # the local header now names another file
    report = scan_archive(mismatched)
    assert not report.passed and "cannot be read" in messages(report)


def test_strict_mode_adds_unpinned_hub_downloads() -> None:
    files = quickstart()
    assert scan_archive(archive(files)).passed
    strict = scan_archive(archive(files), strict=True)
    assert not strict.passed
    assert any(v.code == "SEC100" and "revision" in (v.hint or "") for v in strict.violations)
    core = files["processors/core.py"].replace(
        "SentenceTransformer(model_name)", 'SentenceTransformer(model_name, revision="c9745ed")'
    )
    realtime = files["realtime.py"].replace(
        'SentenceTransformer("all-MiniLM-L6-v2")', 'SentenceTransformer("all-MiniLM-L6-v2", revision="c9745ed")'
    )
    assert scan_archive(
        archive(quickstart(**{"processors/core.py": core, "realtime.py": realtime})), strict=True
    ).passed


def test_the_scanner_allows_exactly_the_import_roots_the_sdk_provides() -> None:
    from featurebus.scan.security_rules import GUIDE_ROOTS
    from featurebus.sdk.aliases import ALIASES

    assert {name.split(".")[0] for name in ALIASES} == set(GUIDE_ROOTS)


def test_the_guides_dependencies_pass_when_workers_have_them() -> None:
    manifest = QUICKSTART_MANIFEST + '\ndependencies = ["torch", "torchvision", "pillow", "numpy>=1.20"]\n'
    report = scan_archive(archive({"manifest.py": manifest, "pipeline.py": QUICKSTART_PIPELINE}))
    assert report.passed, report.lines()


@pytest.mark.parametrize(
    ("dependency", "code", "names"),
    [
        ("leftpad-ml", "DEP002", "leftpad-ml"),  # not a library workers have
        ("numpy==1.0.0", "DEP003", "numpy"),  # a version workers do not run
        ("ffmpeg-python", "DEP002", "ffmpeg"),  # allowed by the guide, but it starts a process
        ("not a requirement!", "DEP001", "not a requirement!"),
    ],
)
def test_a_dependency_workers_cannot_satisfy_fails_the_scan_naming_it(dependency: str, code: str, names: str) -> None:
    manifest = QUICKSTART_MANIFEST + f"\ndependencies = ['pillow', {dependency!r}]\n"
    report = scan_archive(archive({"manifest.py": manifest, "pipeline.py": QUICKSTART_PIPELINE}))
    assert not report.passed
    (problem,) = [v for v in report.violations if v.code.startswith("DEP")]
    assert problem.code == code and names in problem.message and problem.hint, problem
