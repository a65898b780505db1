"""Profiles in MLflow runs.

- `log_profile(profile, run_id=None, reference=None)`: the profile (`<name>/profile.json`, readable
  by `pixelscope show / merge / drift`), a summary (counts, errors by reason, p05 / p50 / p95 / mean
  of every numeric feature) and, with a reference, the drift table (`drift.csv`) as artifacts of the
  run; a few metrics (`<name>.images`, `.ok`, `.errors`, `.drifted_features`, `.brightness_mean_p50`).
  Without run_id: the active run.
- `autolog(model)`: wraps a pyfunc model's `predict` so its image inputs and its predictions are
  logged with an ImageLogger, and every closed window is `log_profile`d into the run that was
  active when autolog was called (or, if none was, the one active at the window's close).
  Inputs it reads: a 4-D array (a batch of H x W x C images), a list of images (arrays, PIL images,
  bytes, paths), or a DataFrame whose `image` column (else its first column) holds them.
  Predictions: one label per image, or a 2-D array of class scores (label = arg max, confidence = max).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixelscope.config import Params, parse_params
from pixelscope.errors import ConfigError
from pixelscope.profile.profile import Profile


def _run_id(run_id: str | None) -> str:
    import mlflow

    if run_id:
        return run_id
    active = mlflow.active_run()
    if active is None:
        raise ConfigError("pixelscope.mlflow.log_profile: no run_id given and no active MLflow run (mlflow.start_run())")
    return active.info.run_id


def summary_of(profile: Profile) -> dict[str, Any]:
    """Counts, errors by reason and the quantiles of every numeric feature (the history row's columns)."""
    from pixelscope.versions.history import profile_columns

    return {"images": profile.files_seen, "ok": profile.ok, "errors": profile.errors,
            "errors_by_reason": dict(sorted(profile.errors_by_reason.items())), "features": profile_columns(profile)}


def log_profile(profile: Profile, run_id: str | None = None, *, reference: Profile | None = None,
                params: Params | None = None, name: str = "pixelscope") -> dict[str, float]:
    """Attach profile (and its drift from reference) to an MLflow run; the metrics it logged."""
    from mlflow.tracking import MlflowClient

    from pixelscope.image_logger import compare
    from pixelscope.validate.step import drift_frame

    run_id = _run_id(run_id)
    client = MlflowClient()
    summary = summary_of(profile)
    metrics = {f"{name}.images": float(summary["images"]), f"{name}.ok": float(summary["ok"]),
               f"{name}.errors": float(summary["errors"])}
    median = summary["features"].get("brightness_mean_p50")
    if median is not None:
        metrics[f"{name}.brightness_mean_p50"] = float(median)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "artifacts"
        folder.mkdir()
        profile.save(folder / "profile.json")
        if reference is not None:
            drift = drift_frame(compare(reference, profile, params or parse_params({})))
            drift.to_csv(folder / "drift.csv", index=False)
            drifted = sorted(set(drift.loc[drift["drift"], "feature"])) if len(drift) else []
            summary["drifted_features"] = drifted
            metrics[f"{name}.drifted_features"] = float(len(drifted))
        (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        client.log_artifacts(run_id, str(folder), artifact_path=name)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    return metrics


def _images(model_input: Any) -> Iterator[Any]:
    """The images of a pyfunc input (see the module doc)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        column = model_input["image"] if "image" in model_input else model_input.iloc[:, 0]
        yield from column.tolist()
    elif isinstance(model_input, np.ndarray) and model_input.ndim == 4:
        yield from model_input
    elif isinstance(model_input, (list, tuple)):
        yield from model_input
    else:
        yield model_input


def _predictions(output: Any, n: int) -> list[tuple[Any, float | None]]:
    """(label, confidence) per image from a pyfunc output."""
    out = np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output)
    if out.ndim == 2 and out.shape[0] == n and np.issubdtype(out.dtype, np.number) and out.shape[1] > 1:
        return [(int(k), float(row[k])) for row, k in zip(out, out.argmax(axis=1))]
    flat = out.reshape(-1).tolist() if out.size == n else [None] * n
    return [(p, None) for p in flat]


def autolog(model: Any, *, reference: Profile | str | Path | None = None, params: Params | None = None,
            name: str = "pixelscope", **logger_options: Any) -> Any:
    """Wrap model.predict (a pyfunc model) so that what it sees is profiled per window into the run.
    logger_options go to ImageLogger (window, out, on_full, ...). Returns the model; its `.pixelscope`
    attribute is the ImageLogger (close it, or let interpreter exit flush it)."""
    import mlflow

    from pixelscope.image_logger import ImageLogger

    active = mlflow.active_run()
    run_id = active.info.run_id if active is not None else None
    ref = Profile.load(reference) if isinstance(reference, (str, Path)) else reference

    def on_window(result: Any) -> None:
        log_profile(Profile.load(result.profile_file), run_id, reference=ref, params=params,
                    name=f"{name}/{result.start:%Y%m%dT%H%M%SZ}")

    logger = ImageLogger(params, reference=ref, on_window=on_window, **logger_options)
    original = model.predict

    def predict(model_input: Any, *args: Any, **kwargs: Any) -> Any:
        output = original(model_input, *args, **kwargs)
        images = list(_images(model_input))
        for image, (label, confidence) in zip(images, _predictions(output, len(images))):
            logger.log(image, prediction=label, confidence=confidence)
        return output

    model.predict = predict
    model.pixelscope = logger
    return model
