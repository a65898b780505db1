"""Embedding throughput: files -> embeddings end to end, and model-only on decoded tensors.

    python benchmarks/bench_embed.py [--n 5000] [--models efficientnet_lite0 torchvision.resnet50]
                                     [--device auto|cpu|cuda] [--backends auto torch]

End to end = the embed step's own loop (decode workers / nvJPEG feeding the model,
overlapped), from JPEG files on disk to float16 vectors, timed after one warm-up batch.
Model only = the same model and backend on batches already decoded to uint8 tensors.
Results are appended to benchmarks/results/embed.jsonl with the device used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def run(n: int, model: str, device: str, backend: str, batch_size: int) -> dict:
    import torch
    from bench_profile import image_set

    from pixelscope.config import EmbedConfig, PreprocessConfig
    from pixelscope.embed.infer import Embedder
    from pixelscope.embed.loader import Item, batches, resolve_device
    from pixelscope.embed.transforms import build

    root = image_set(n)
    files = sorted(str(p) for p in root.rglob("*.jpg"))[:n]
    items = [Item(f"{i:064x}", f) for i, f in enumerate(files)]
    pcfg = PreprocessConfig(device=device, batch_size=batch_size)
    dev = resolve_device(device)
    prep = build(pcfg)
    emb = Embedder(EmbedConfig(model=model, backend=backend, batch_size=batch_size), prep, dev)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    # end to end: files -> vectors (first batch is warm-up: pool start, ONNX export, cuDNN autotune)
    stream = batches(items, pcfg, batch_size)
    first = next(stream)
    emb(first.images)
    sync()
    t0 = time.perf_counter()
    done, kept = 0, []
    for b in stream:
        emb(b.images)
        done += len(b.ids)
        if len(kept) < 4:
            kept.append(b.images)
    sync()
    e2e = done / (time.perf_counter() - t0)

    # model only: the same batches, already decoded (on the model's device)
    tensors = [k.to(dev) for k in kept]
    emb(tensors[0])
    sync()
    t0 = time.perf_counter()
    m = 0
    reps = max(1, (200 if dev == "cpu" else 4000) // (len(tensors) * batch_size))
    for _ in range(reps):
        for t in tensors:
            emb(t)
            m += len(t)
    sync()
    model_only = m / (time.perf_counter() - t0)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    return {"n": n, "model": model, "device": name, "backend": emb.backend, "precision": str(emb.dtype or "fp32"),
            "batch_size": batch_size, "end_to_end_img_s": round(e2e, 1), "model_only_img_s": round(model_only, 1),
            "e2e_vs_model_pct": round(100 * e2e / model_only, 1), "date": datetime.now(UTC).isoformat(timespec="seconds")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backends", nargs="+", default=["auto"])
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    for model in args.models:
        for backend in args.backends:
            r = run(args.n, model, args.device, backend, args.batch_size)
            print(json.dumps(r), flush=True)
            with open(HERE / "results" / "embed.jsonl", "a") as fh:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
