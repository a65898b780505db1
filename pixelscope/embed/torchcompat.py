"""Make `import torchvision` work on any torch build, in pixelscope and in a user's own scripts.

The registry's torchvision wheel is a CUDA build: with the CPU-only torch wheel its compiled
extension does not load, and `import torchvision` then fails while registering fake kernels for
`torchvision::nms` (pytorch/vision#9085). Models, transforms and datasets need none of the
compiled ops, so when (and only when) the extension cannot load, the two operators torchvision's
import touches are defined (they raise if called) before torchvision runs. With a working
extension (a CUDA machine, a matching CPU wheel) nothing is done.

How it is reached — `install()` puts a finder on `sys.meta_path` that acts on the first
`import torchvision` and then steps aside; importing this module imports nothing heavy:

- `make install` writes a `.pth` file into the venv (`write_pth()`) that calls `install()` at every
  interpreter start (about 4 ms, measured with -X importtime), so a training script that only does `import torchvision` works in
  the project's venv (`remove_pth()` takes it out);
- pixelscope's own code calls `import_torchvision()`, which works without the `.pth` too.

Why a hook and not another wheel pair: the CUDA torch 2.14.1 + torchvision 0.29.1 pair that the
registry has imports cleanly, but costs about 5.5 GB in the venv against 0 (BENCHMARKS.md, "The
torchvision import"); the CPU pair 2.9.1 / 0.24.1 exists only for aarch64.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

PTH_NAME = "pixelscope_torchvision.pth"
PTH_LINE = ("import sys; exec('try:\\n import pixelscope.embed.torchcompat as m\\n m.install()\\n"
            "except Exception:\\n pass')  # pixelscope: `import torchvision` with a CPU torch (see that module)\n")

_SHIM: Any = None  # the torch.library.Library holding the stand-in operators, once defined


def _unavailable(dets: Any, scores: Any, iou_threshold: float) -> Any:
    raise RuntimeError("torchvision's compiled operators (nms) are not available with this torch build")


def _define_missing_ops() -> None:
    global _SHIM
    if _SHIM is not None:
        return
    import torch

    _SHIM = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        _SHIM.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SHIM.impl(name, _unavailable, "CompositeExplicitAutograd")


def _extension_loads(package_dirs: list[str]) -> bool:
    """Load torchvision's compiled extension the way torchvision does (torch.ops.load_library on
    its _C library); False when it is there and fails to load (the CUDA build on a CPU torch)."""
    import importlib.machinery
    from pathlib import Path

    import torch

    for folder in package_dirs:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            lib = Path(folder) / f"_C{suffix}"
            if lib.exists():
                try:
                    torch.ops.load_library(str(lib))
                    return True
                except (OSError, ImportError, RuntimeError):
                    return False
    return True  # no extension at all: torchvision registers no fake kernels for it


def prepare() -> None:
    """Before torchvision is imported: define the stand-in operators if its extension cannot load."""
    import importlib.util

    if _SHIM is not None or "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    if not _extension_loads(list(spec.submodule_search_locations)):
        _define_missing_ops()


class _Finder:
    """A sys.meta_path finder that runs prepare() on the first `import torchvision`, then leaves the
    import to the usual finders (it never finds anything itself)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "torchvision":
            uninstall()
            prepare()
        return None


_FINDER = _Finder()


def install() -> None:
    """Put the finder in front of the import system (once); nothing is imported until torchvision is."""
    if _FINDER not in sys.meta_path and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def import_torchvision() -> ModuleType:
    """`import torchvision`, working around a compiled extension that cannot load."""
    install()
    import torchvision

    return torchvision


def shimmed() -> bool:
    """True when torchvision's compiled ops are pure-torch stand-ins (no nvJPEG, no C++ decode)."""
    return _SHIM is not None


def pth_path() -> Path:
    """Where the .pth goes: this interpreter's site-packages (the venv's, in a venv)."""
    import sysconfig
    from pathlib import Path

    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def write_pth() -> Path:
    """Make every interpreter of this environment call install() at start (what `make install` runs)."""
    path = pth_path()
    path.write_text(PTH_LINE)
    return path


def remove_pth() -> None:
    pth_path().unlink(missing_ok=True)
