"""Import torchvision on any torch build.

The registry's torchvision wheel is a CUDA build: with a CPU-only torch its compiled
extension does not load, and `import torchvision` then fails while registering fake
kernels for `torchvision::nms` (pytorch/vision#9085). Models and transforms need none of
the compiled ops, so when (and only when) the extension is missing we define the two
operators torchvision's import touches (they raise if called), then import it.
With a working extension (a CUDA machine, a matching CPU wheel) this does nothing.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_SHIM: torch.library.Library | None = None


def _unavailable(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    raise RuntimeError("torchvision's compiled operators (nms) are not available with this torch build")


def _define_missing_ops() -> None:
    global _SHIM
    if _SHIM is not None:
        return
    _SHIM = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        _SHIM.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SHIM.impl(name, _unavailable, "CompositeExplicitAutograd")


def import_torchvision() -> ModuleType:
    """`import torchvision`, working around a compiled extension that cannot load."""
    try:
        import torchvision

        return torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed, half-initialised import
    _define_missing_ops()
    import torchvision

    return torchvision


def shimmed() -> bool:
    """True when torchvision's compiled ops are pure-torch stand-ins (no nvJPEG, no C++ decode)."""
    return _SHIM is not None
