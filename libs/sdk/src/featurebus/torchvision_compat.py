"""torchvision's models and transforms over the CPU build of torch that featurebus workers run.

PyPI's torchvision wheels are built against PyPI's CUDA torch: beside a CPU torch their C++
extension (``torchvision._C``: nms, roi_align, ...) cannot load, and ``import torchvision`` then
fails outright, because its fake-tensor registrations of ``torchvision::nms`` and ``::qnms`` assume
the extension defined them. Defining those two operator schemas first lets everything else load:
models, weights, transforms — what the guide's image classifier uses. The C++ operators stay
unavailable, and calling one raises torchvision's own error saying so.

:func:`install` puts a finder on ``sys.meta_path`` that does this on the first ``import
torchvision`` only where the extension does not load (a node with a matching torch keeps it), so a
plugin that never imports torchvision pays nothing, not even torch's import.
"""

# Imported by a .pth file at every interpreter's start: the standard library's cheapest parts only.
import sys

__all__ = ["install"]

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
