"""Preprocessing transforms: the list in params.yaml (`preprocess.transforms`), applied in order.

Each entry is one name -> options:
- a built-in (`resize`, `center_crop`, `normalize`),
- a name registered with `@transform("name")` in a module listed in `preprocess.plugins`,
- `torchvision.<Class>`: any `torchvision.transforms.v2` transform, e.g. RandomHorizontalFlip.

Every step but `normalize` runs per image on a uint8 CHW tensor (in the decode workers on
CPU, on the GPU when present); the result is what the tensor store keeps. `normalize`
must be last: it runs on the whole batch, on the model's device, as floats. Random
transforms (augmentations) are seeded per image from its id, so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pixelscope.config import PreprocessConfig
from pixelscope.embed.torchcompat import import_torchvision
from pixelscope.errors import ConfigError
from pixelscope.registry import Registry

import_torchvision()  # before the torchvision imports below (and in worker processes' preload)
from torchvision.transforms import InterpolationMode, v2  # noqa: E402
from torchvision.transforms.v2 import functional as F  # noqa: E402

Step = Callable[[torch.Tensor], torch.Tensor]
TRANSFORMS: Registry[Callable[..., Step]] = Registry("transform", plugins_key="preprocess.plugins")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def transform(name: str, *, replace: bool = False, _builtin: bool = False
              ) -> Callable[[Callable[..., Step]], Callable[..., Step]]:
    """Register a transform factory: options from params.yaml -> a function of one uint8 CHW image.

    A name is taken once: replacing a built-in or another plugin's transform needs replace=True."""
    def register(factory: Callable[..., Step]) -> Callable[..., Step]:
        return TRANSFORMS.register(name, factory, builtin=_builtin, replace=replace)
    return register


def _mode(interpolation: str) -> InterpolationMode:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}")
    return getattr(InterpolationMode, interpolation.upper())


@transform("resize", _builtin=True)
def resize(size: int, interpolation: str = "bilinear") -> Step:
    """Shorter side to `size` (antialiased), aspect kept."""
    mode = _mode(interpolation)
    return lambda img: F.resize(img, [size], interpolation=mode, antialias=True)


@transform("center_crop", _builtin=True)
def center_crop(size: int) -> Step:
    return lambda img: F.center_crop(img, [size, size])


@dataclass
class Preprocess:
    """The per-image steps, then normalisation of a batch. Built from params by build()."""

    steps: list[Step]
    mean: list[float] | None
    std: list[float] | None
    min_side: int | None  # decode at least this shorter side (a leading resize), else full size
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Identifies the preprocessing: a change re-creates the tensors and re-embeds."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:16]

    def apply(self, img: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """uint8 CHW in, uint8 CHW out. The seed makes random transforms repeatable per image."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for step in self.steps:
                img = step(img)
        return img

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float NCHW in [0, 1], then (x - mean) / std."""
        x = batch.float().div_(255)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = x.sub_(mean).div_(std)
        return x


def build(cfg: PreprocessConfig) -> Preprocess:
    """The configured transforms, checked on two test images (a bad entry names its key)."""
    TRANSFORMS.load_plugins(cfg.plugins)
    steps: list[Step] = []
    mean = std = None
    min_side = None
    for i, entry in enumerate(cfg.transforms):
        (name, opts), = entry.items()
        where = f"preprocess.transforms[{i}].{name}"
        opts = opts or {}
        try:
            if name == "normalize":
                if i != len(cfg.transforms) - 1:
                    raise ConfigError(f"{where}: normalize must be the last transform (it runs on the batch)")
                mean, std = [float(v) for v in opts["mean"]], [float(v) for v in opts["std"]]
                if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                    raise ValueError("mean and std need 3 values each, std > 0")
                continue
            if name.startswith("torchvision."):
                cls = getattr(v2, name.split(".", 1)[1], None)
                if not isinstance(cls, type):
                    raise ConfigError(f"{where}: torchvision.transforms.v2 has no transform {name.split('.', 1)[1]!r}")
                steps.append(cls(**opts))
            elif name in TRANSFORMS:
                steps.append(TRANSFORMS[name](**opts))
                if name == "resize" and not steps[:-1]:
                    min_side = int(opts["size"])
            else:
                raise ConfigError(f"{where}: unknown transform (built-in: {', '.join(sorted(TRANSFORMS.names()))}, normalize; "
                                  "a plugin's @transform name; or torchvision.<v2 class>)")
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"{where}: bad options {opts}: {e}") from None
    prep = Preprocess(steps, mean, std, min_side, {"transforms": cfg.transforms, "plugins": cfg.plugins})
    _check_fixed_size(prep)
    return prep


def _check_fixed_size(prep: Preprocess) -> None:
    """Batches need one size: the steps must turn any image into the same uint8 3xHxW."""
    outs = []
    for shape in ((3, 300, 500), (3, 500, 300)):
        out = prep.apply(torch.full(shape, 128, dtype=torch.uint8))
        if out.dtype != torch.uint8 or out.ndim != 3 or out.shape[0] != 3:
            raise ConfigError(f"preprocess.transforms: the steps before normalize must keep uint8 3xHxW images, "
                              f"got {tuple(out.shape)} {out.dtype}")
        outs.append(tuple(out.shape))
    if outs[0] != outs[1]:
        raise ConfigError(f"preprocess.transforms: output size depends on the input ({outs[0]} vs {outs[1]}); "
                          "end with a fixed-size step such as center_crop")
