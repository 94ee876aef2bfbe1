"""torchvision's models and transforms over the CPU build of torch that featurebus workers run.

PyPI's torchvision wheels are built against PyPI's CUDA torch: beside a CPU torch their C++
extension (``torchvision._C``: nms, roi_align, ...) cannot load, and ``import torchvision`` then
fails outright, because its fake-tensor registrations of ``torchvision::nms`` and ``::qnms`` assume
the extension defined them. Defining those two operator schemas first lets everything else load:
models, weights, transforms — what the guide's image classifier uses. The C++ operators stay
unavailable, and calling one raises torchvision's own error saying so.

Pretrained weights (``models.mobilenet_v2(pretrained=True)``, ``weights="DEFAULT"``): torchvision
downloads them from download.pytorch.org, which offline workers (``HF_HUB_OFFLINE=1``) cannot
reach. There :func:`offline_weights` makes torch.hub's loader read them from the model registry
instead — ``<file stem>.safetensors`` of a ``torchvision/<arch>`` model laid out in the node's
Hugging Face cache (``featurebus models import torchvision/mobilenet_v2 --from
mobilenet_v2-b0353104.pth`` converts and imports the file) — and a file that is not there fails
with :class:`~featurebus.sdk.model_loading.ModelNotAvailable` naming the import command, not with
a refused connection.

:func:`install` puts a finder on ``sys.meta_path`` that does this on the first ``import
torchvision`` only where the extension does not load (a node with a matching torch keeps it), so a
plugin that never imports torchvision pays nothing, not even torch's import.
"""

# Imported by a .pth file at every interpreter's start: the standard library's cheapest parts only.
import sys

__all__ = ["install", "offline_weights"]

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


class _Finder:
    """Finds nothing itself: on the first lookup of ``torchvision`` it prepares torch, then steps aside."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> None:
        if name == "torchvision":
            sys.meta_path[:] = [f for f in sys.meta_path if f is not cls]
            _prepare()
        return None


def install() -> None:
    """Prepare the next ``import torchvision`` (idempotent; nothing if it was imported already)."""
    if "torchvision" not in sys.modules and _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)


def _prepare() -> None:
    import importlib.machinery
    from pathlib import Path

    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the import fails as it would anyway
    import torch

    offline_weights()
    extension = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    if extension is not None:
        try:
            torch.ops.load_library(str(extension))
            return
        except OSError:
            pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        library.define(schema)
    _keep.append(library)  # a Library's definitions last as long as the object


_keep: list[object] = []


def offline_weights() -> None:
    """torch.hub's ``load_state_dict_from_url`` reads the model registry's weights where the hub
    is off (``HF_HUB_OFFLINE=1``, as on every worker); elsewhere it downloads as usual. Idempotent."""
    import torch.hub

    original = torch.hub.load_state_dict_from_url
    if getattr(original, "_featurebus", False):
        return

    def load_state_dict_from_url(
        url: str,
        model_dir: str | None = None,
        map_location: object = None,
        progress: bool = True,
        check_hash: bool = False,
        file_name: str | None = None,
        weights_only: bool = False,
    ) -> object:
        import os
        from urllib.parse import urlparse

        name = file_name or os.path.basename(urlparse(url).path)
        cached = os.path.join(model_dir or os.path.join(torch.hub.get_dir(), "checkpoints"), name)
        if os.environ.get("HF_HUB_OFFLINE") != "1" or os.path.exists(cached):
            return original(url, model_dir, map_location, progress, check_hash, file_name, weights_only)  # type: ignore[arg-type]
        return _registry_weights(url, name, map_location)

    load_state_dict_from_url._featurebus = True  # type: ignore[attr-defined]
    torch.hub.load_state_dict_from_url = load_state_dict_from_url  # type: ignore[assignment]
    api = sys.modules.get("torchvision.models._api")  # torchvision imported before: it bound the original
    if api is not None:
        api.load_state_dict_from_url = load_state_dict_from_url  # type: ignore[attr-defined]


def weights_repo(file_name: str) -> str:
    """The model registry's name for a torchvision weights file: ``mobilenet_v2-b0353104.pth`` is
    ``torchvision/mobilenet_v2``."""
    stem = file_name.rsplit(".", 1)[0]
    return "torchvision/" + (stem.rsplit("-", 1)[0] if "-" in stem else stem)


def _registry_weights(url: str, name: str, map_location: object) -> object:
    import os
    from pathlib import Path

    from featurebus.sdk.model_loading import ModelNotAvailable

    stem = name.rsplit(".", 1)[0]
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    repo = weights_repo(name)
    found = sorted(hub.expanduser().glob(f"models--{repo.replace('/', '--')}/snapshots/*/{stem}.safetensors"))
    if not found:
        found = sorted(hub.expanduser().glob(f"models--torchvision--*/snapshots/*/{stem}.safetensors"))
    if not found:
        raise ModelNotAvailable(
            f"torchvision's weights {name} are not in this installation's model registry: featurebus workers "
            f"have no download.pytorch.org ({url})",
            hint=f"an operator downloads {url} and imports it: 'featurebus models import {repo} --from {name}' "
            f"(README, Models); a plugin whose code the scanner cannot read names it in its manifest: "
            f'models = ["{repo}"]',
        )
    from safetensors.torch import load_file

    device = map_location if isinstance(map_location, str) else str(map_location) if map_location is not None else "cpu"
    return load_file(str(found[-1]), device=device)
