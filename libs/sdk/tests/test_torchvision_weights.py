"""torchvision's pretrained weights on offline workers: the guide's ``models.mobilenet_v2(pretrained=True)``
loads the model registry's copy, a missing one fails naming the import command, and the CLI turns
torchvision's ``.pth`` into safetensors for the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")

from safetensors.torch import load_file, save_file  # noqa: E402

from featurebus.runtime.errors import model_unavailable  # noqa: E402
from featurebus.sdk.model_loading import ModelNotAvailable  # noqa: E402
from featurebus.sdk.model_sources import SourceError, converted_state_dict  # noqa: E402
from featurebus.torchvision_compat import offline_weights, weights_repo  # noqa: E402

FILE = "mobilenet_v2-b0353104.pth"  # MobileNet_V2_Weights.IMAGENET1K_V1, what pretrained=True means


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A worker's environment: the hub off, an HF cache, an empty torch hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    offline_weights()
    return tmp_path / "hf" / "hub"


def test_pretrained_weights_load_from_the_registrys_copy_in_the_node_cache(offline: Path) -> None:
    torch.manual_seed(3)
    weights = models.mobilenet_v2(weights=None).state_dict()
    snapshot = offline / "models--torchvision--mobilenet_v2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(
        {k: v.clone().contiguous() for k, v in weights.items()}, str(snapshot / "mobilenet_v2-b0353104.safetensors")
    )

    model = models.mobilenet_v2(pretrained=True)  # the guide's line, unchanged

    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_missing_weights_fail_as_a_model_not_available_naming_the_import_command(offline: Path) -> None:
    with pytest.raises(ModelNotAvailable) as raised:
        models.mobilenet_v2(pretrained=True)
    assert "mobilenet_v2-b0353104.pth" in str(raised.value) and "download.pytorch.org" in str(raised.value)
    message, hint = model_unavailable(raised.value) or ("", "")
    assert message == str(raised.value)
    assert f"featurebus models import torchvision/mobilenet_v2 --from {FILE}" in hint


def test_with_the_hub_on_torchvision_downloads_as_usual(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, *a, **k: asked.append(url) or 1 / 0)
    offline_weights()
    with pytest.raises(ZeroDivisionError):
        models.mobilenet_v2(pretrained=True)
    assert asked == [f"https://download.pytorch.org/models/{FILE}"]


def test_a_weights_file_is_named_by_its_architecture() -> None:
    assert weights_repo(FILE) == "torchvision/mobilenet_v2"
    assert weights_repo("resnet50-11ad3fa6.pth") == "torchvision/resnet50"
    assert weights_repo("plain.pth") == "torchvision/plain"


def test_a_pth_state_dict_converts_to_safetensors_tensor_for_tensor(tmp_path: Path) -> None:
    state = torch.nn.Linear(3, 2).state_dict()
    torch.save(state, tmp_path / "head-0123.pth")
    out = tmp_path / "out"
    out.mkdir()
    converted = converted_state_dict(tmp_path / "head-0123.pth", out)
    assert converted.name == "head-0123.safetensors"
    back = load_file(str(converted))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


class Payload:
    def __reduce__(self) -> tuple[object, ...]:
        return (print, ("ran code",))


@pytest.mark.parametrize("content", [[1, 2, 3], Payload()])
def test_a_pth_that_is_no_state_dict_or_would_run_code_is_refused(tmp_path: Path, content: object) -> None:
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(SourceError) as raised:
        converted_state_dict(tmp_path / "bad.pth", tmp_path)
    assert raised.value.param == "--from" and "bad.pth" in raised.value.message
