"""Log the curated set to MLflow the way MLflow records datasets: one `mlflow.log_input` per
split (context training / validation / test), each a dataset whose source is the DVC version
of the raw data (repo, path, md5, git commit) and whose digest is the ledger's sha256; the
dataset card, the curated profile and the validation results as artifacts; the counts as
metrics. A training run can then point at exactly the data it used."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pixelscope.config import MlflowConfig

CONTEXTS = {"train": "training", "val": "validation", "validation": "validation", "test": "test"}


def _dvc_source(version: dict[str, Any], project: Path):
    from mlflow.data.dataset_source import DatasetSource

    class DvcDatasetSource(DatasetSource):
        """The raw folder at a DVC version: what the curated set was made from."""

        def __init__(self, info: dict[str, Any]):
            self.info = info

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self) -> str:
            return self.info["path"]  # `dvc pull` / `dvc.api` at info["git_commit"] gives the files

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> DatasetSource:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return self.info

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DatasetSource:
            return cls(dict(source_dict))

    return DvcDatasetSource({"repo": str(project.resolve()), "path": version.get("path"), "md5": version.get("md5"),
                             "git_commit": version.get("git_commit")})


def log_curated(out: Path, counts: dict[str, Any], cfg: MlflowConfig, version: dict[str, Any], project: Path,
                name: str) -> str:
    """Log the curated folder `out` to MLflow; returns the run id."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    digest = hashlib.sha256((out / "curation.parquet").read_bytes()).hexdigest()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    exp_id = exp.experiment_id if exp is not None else mlflow.create_experiment(
        cfg.experiment, artifact_location=str((project / cfg.artifact_location).resolve().as_uri())
        if cfg.artifact_location else None)
    source = _dvc_source(version, project)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"curate {name}") as run:
        for split in sorted(counts["splits"]):
            mlflow.log_input(MetaDataset(source, name=f"{name}/{split}", digest=digest[:16]),  # type: ignore[abstract]  # concrete at run time
                             context=CONTEXTS.get(split, split))
        mlflow.log_metrics({k: float(counts[k]) for k in ("files", "included", "excluded", "unreadable", "labels_fixed")}
                           | {f"split_{s}": float(n) for s, n in counts["splits"].items()})
        mlflow.set_tags({"pixelscope.ledger_sha256": digest, "pixelscope.raw_md5": str(version.get("md5")),
                         "pixelscope.git_commit": str(version.get("git_commit"))})
        for f in ("README.md", "profile.json", "validation.json", "curate.json"):
            if (out / f).exists():
                mlflow.log_artifact(str(out / f))
    return run.info.run_id
