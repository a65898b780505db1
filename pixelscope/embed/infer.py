"""Batched inference: uint8 batches in, float16 vectors out.

torch: `inference_mode`, channels_last, bf16/fp16 autocast on CUDA. On the CPU the
default backend is ONNX Runtime when it is installed (measured several times faster than
eager torch here, see BENCHMARKS.md); the exported graph is cached per model.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from pixelscope.config import ConfigError, EmbedConfig
from pixelscope.embed.models import Model, load_model
from pixelscope.embed.transforms import Preprocess
from pixelscope.io.atomic import atomic_path


def cache_dir() -> Path:
    base = os.environ.get("PIXELSCOPE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pixelscope"
    return Path(base)


def model_key(model: Model, prep: Preprocess) -> str:
    """The embedding store key: model + its weights + the preprocessing. Any change re-embeds."""
    spec = {"model": model.name, "weights": model.weights_sha256, "preprocess": prep.id}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


class Embedder:
    """model(normalize(batch)) on the configured device and backend."""

    def __init__(self, cfg: EmbedConfig, prep: Preprocess, device: str):
        self.cfg, self.prep, self.device = cfg, prep, device
        self.model = load_model(cfg)
        self.key = model_key(self.model, prep)
        self.dim = self.model.dim
        self.backend = self._choose_backend()
        self.dtype = self._autocast_dtype()
        self._session = None  # ONNX Runtime session, made on first use (after decode workers started)
        if self.backend == "torch":
            self.model.net.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # a documented keyword the stubs lack

    def _choose_backend(self) -> str:
        b = self.cfg.backend
        if b == "onnx":
            if self.device != "cpu":
                raise ConfigError("embed.backend: onnx runs on the CPU here; use torch (or auto) with CUDA")
            if not _onnx_available():
                raise ConfigError("embed.backend: onnx needs `pip install onnxruntime onnx`")
            return "onnx"
        if b == "torch":
            return "torch"
        return "onnx" if self.device == "cpu" and self.cfg.precision in ("auto", "fp32") and _onnx_available() else "torch"

    def _autocast_dtype(self) -> torch.dtype | None:
        p = self.cfg.precision
        if p == "fp32" or self.backend == "onnx" or (p == "auto" and self.device == "cpu"):
            return None
        if p == "fp16":
            return torch.float16
        return torch.bfloat16

    def _onnx_session(self):
        import onnxruntime as ort

        path = cache_dir() / "onnx" / f"{self.model.name}-{self.model.weights_sha256[:16]}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            size = 224
            with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(self.model.net, torch.zeros(1, 3, size, size), str(tmp), input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n"}},
                                  dynamo=False, opset_version=17)
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """uint8 N x 3 x H x W (any device) -> float16 N x dim on the CPU."""
        if len(images) == 0:
            return np.empty((0, self.dim), dtype=np.float16)
        x = self.prep.normalize(images.to(self.device, non_blocking=True))
        if self.backend == "onnx":
            session = self._session = self._session or self._onnx_session()
            y = session.run(None, {"x": x.contiguous().numpy()})[0]
            return y.astype(np.float16)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(torch.device(self.device).type,
                                                    dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            y = self.model.net(x)
        return y.float().cpu().numpy().astype(np.float16)
