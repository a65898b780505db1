"""One typed model for every knob in params.yaml.

Why one model: DVC stages, Prefect flows and the CLI all read the same file, so a wrong
key must fail the same way everywhere, naming the key, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pixelscope.errors import ConfigError
from pixelscope.io.url import Url, as_location, is_url

__all__ = ["ConfigError", "Params", "load_params", "parse_params", "dotted_overrides", "set_params"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(_Strict):
    raw: Path | Url = Path("data/raw")  # a folder, or a store: s3://bucket/prefix (see storage)
    manifest: Path = Path("data/interim/manifest.parquet")
    objects: Path = Path("data/interim/objects.parquet")  # one row per annotated object (ingest.annotations)
    object_images: Path = Path("data/interim/object_images.parquet")  # per image: objects, classes, coverage
    predicted_objects: Path = Path("data/interim/predicted_objects.parquet")  # the model's boxes (annotations.predictions)
    profile: Path = Path("data/processed/profile.json")
    tensors: Path = Path("data/processed/tensors")
    embeddings: Path = Path("data/processed/embeddings")
    issues: Path = Path("data/processed/issues.parquet")  # one row per file: what is wrong with it
    issue_pairs: Path = Path("data/processed/issues_pairs.parquet")  # duplicate / leakage pairs
    issues_summary: Path = Path("data/processed/issues.json")  # counts, thresholds, dataset-level findings
    neighbours: Path = Path("data/processed/neighbours.parquet")  # each image's nearest others (embedding kNN)
    metrics: Path = Path("reports/metrics")
    publish: Path = Path("reports/publish")
    curated: Path = Path("data/curated")  # the curated training set: ledger, exports, dataset card
    history: Path = Path("reports/history/history.parquet")  # one row per dataset version and monitored drop
    monitor: Path = Path("reports/monitor")  # per-drop outputs and the rolling profiles (`pixelscope monitor`)

    def under(self, project: str | Path) -> PathsConfig:
        """The same paths resolved against a project folder (absolute paths stay as they are).

        The one place paths are resolved: every step reads `params.paths.under(project)`."""
        root = Path(project)
        resolved: dict[str, Any] = {name: value if isinstance(value, Url) else root / value for name, value in self}
        return PathsConfig.model_construct(**resolved)

    @field_validator("raw", mode="before")
    @classmethod
    def _location(cls, v: Any) -> Any:
        return as_location(v) if isinstance(v, str) else v

    def metrics_file(self, stage: str) -> Path:
        """Where a stage's counts and timings go (`dvc metrics show`): metrics/<stage>.json."""
        return self.metrics / f"{stage}.json"


class AnnotationsConfig(_Strict):
    """Detection / segmentation annotations (pixelscope.annotations): read by the objects stage."""

    path: Path | None = None  # a COCO JSON file, or a YOLO / VOC / mask-PNG folder (relative to the project)
    format: Literal["auto", "coco", "yolo", "voc", "masks"] = "auto"  # auto: told by the path (an error if unclear)
    # a model's predicted boxes with scores: a COCO results JSON (ids of the COCO ground truth above) or
    # a YOLO folder with a confidence per line; checked like the annotations, written to paths.predicted_objects
    predictions: Path | None = None
    predictions_format: Literal["auto", "coco", "yolo"] = "auto"
    # brightness / contrast / sharpness of each box (pixelscope.annotations.crops): one reduced decode per image
    crop_features: bool = True


class IngestConfig(_Strict):
    labels: Literal["none", "folder", "csv"] = "folder"
    labels_csv: Path | None = None
    exclude: list[str] = Field(
        default_factory=lambda: [
            ".*", "*.md", "*.txt", "*.csv", "*.json", "*.yaml", "*.yml", "*.xml",
            "*.dvc", "SHA256SUMS", "Thumbs.db",
        ]
    )
    max_image_pixels: int = Field(default=178_956_970, gt=0)
    max_file_bytes: int = Field(default=1 << 30, gt=0)  # larger files are error rows (too_large), never read whole
    exif_errors: Literal["warn", "error"] = "warn"
    workers: int = Field(default=0, ge=0, description="0 = one per CPU core")
    chunk_rows: int = Field(default=2048, gt=0)
    annotations: AnnotationsConfig = Field(default_factory=AnnotationsConfig)

    @model_validator(mode="after")
    def _csv_needs_path(self) -> IngestConfig:
        if self.labels == "csv" and self.labels_csv is None:
            raise ValueError("labels: 'csv' needs ingest.labels_csv to point at a CSV (path,label)")
        return self


class FeaturesConfig(_Strict):
    working_size: int = Field(default=256, ge=32, le=4096)
    dark_level: int = Field(default=16, ge=0, le=255)
    bright_level: int = Field(default=239, ge=0, le=255)
    plugins: list[str] = Field(default_factory=list)


def _default_transforms() -> list[dict[str, dict[str, Any]]]:
    return [
        {"resize": {"size": 256, "interpolation": "bilinear"}},
        {"center_crop": {"size": 224}},
        {"normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
    ]


class PreprocessConfig(_Strict):
    transforms: list[dict[str, dict[str, Any]]] = Field(default_factory=_default_transforms)
    plugins: list[str] = Field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, ge=1)
    workers: int = Field(default=0, ge=0, description="decode processes; 0 = one per CPU core")

    @model_validator(mode="after")
    def _one_name_per_entry(self) -> PreprocessConfig:
        for i, t in enumerate(self.transforms):
            if len(t) != 1:
                raise ValueError(f"transforms[{i}] must be one name -> options, e.g. {{resize: {{size: 256}}}}")
        return self


class EmbedConfig(_Strict):
    model: str = "efficientnet_lite0"
    weights: Path | None = None
    plugins: list[str] = Field(default_factory=list)
    backend: Literal["auto", "torch", "onnx"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: int = Field(default=64, ge=1)
    shard_rows: int = Field(default=4096, ge=1)
    sample_size: int = Field(default=512, ge=2)
    projection: Literal["auto", "umap", "pca"] = "auto"
    clusters: bool = True  # HDBSCAN clusters of the map (a `cluster` column; embed/projection.py)
    cluster_min_size: int | None = Field(default=None, ge=2)  # smallest cluster; None: max(5, sqrt(n) / 2)
    semantic: bool = True  # top-1 class + confidence from the model's own classifier (models with named classes)


class DriftConfig(_Strict):
    alpha: float = Field(default=0.02, gt=0, lt=1)  # calibrated: BENCHMARKS.md, "Drift calibration"
    correction: Literal["holm", "bh"] = "holm"
    bins: int = Field(default=10, ge=2, le=100)
    min_rows: int = Field(default=30, ge=2)
    segments: list[str] = Field(default_factory=lambda: ["label"])
    exclude: list[str] = Field(default_factory=lambda: ["frames", "has_alpha"])
    ks_min: float = Field(default=0.07, ge=0)  # calibrated: BENCHMARKS.md, "subtle shifts"
    psi_max: float = Field(default=0.2, ge=0)
    hellinger_max: float = Field(default=0.15, ge=0)
    js_max: float = Field(default=0.05, ge=0)
    tv_max: float = Field(default=0.07, ge=0)
    mmd_min: float = Field(default=0.0, ge=0)
    mmd_permutations: int = Field(default=200, ge=10)
    centroid_shift_max: float = Field(default=0.02, ge=0)
    balance: list[str] = Field(default_factory=lambda: ["label", "pred_label"])  # categorical columns whose shares are tested
    share_min: float = Field(default=0.02, ge=0)  # a value's share must move at least this much (balance tests)
    # alpha is split between families of hypotheses, Holm (or BH) inside each: a strong signal in
    # one family is not drowned by hundreds of tests in another; the family-wise rate stays alpha.
    # Weights, normalised over the families that have tests: without annotations there is no
    # `objects` family and the other four split alpha 0.2 / 0.5 / 0.1 / 0.2 as before it existed.
    budget: dict[str, float] = Field(default_factory=lambda: {"class_balance": 0.2, "features": 0.5,
                                                              "segments": 0.1, "embedding": 0.2, "objects": 0.2})

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: dict[str, float]) -> dict[str, float]:
        families = ("class_balance", "features", "segments", "embedding", "objects")
        unknown = sorted(set(v) - set(families))
        if unknown:
            raise ValueError(f"unknown families {unknown}; families: {', '.join(families)}")
        if any(w <= 0 for w in v.values()):
            raise ValueError(f"weights must be > 0 (normalised over the families that have tests), got {v}")
        return v


class ProfileConfig(_Strict):
    kll_k: int = Field(default=200, ge=8, le=65535)
    segment_kll_k: int = Field(default=100, ge=8, le=65535)
    frequent_items_lg_max_k: int = Field(default=7, ge=3, le=16)
    hll_lg_k: int = Field(default=12, ge=4, le=21)
    segments: list[str] = Field(default_factory=lambda: ["label", "source"])
    max_segment_values: int = Field(default=64, ge=1)
    # the model's outputs per image (pixelscope.io.predictions): Parquet or CSV, `id` or `path` -> `prediction`,
    # `confidence` (+ `boxes`, `box_area`); profiled per predicted class and per label, drift-tested
    predictions: Path | None = None


DEFAULT_FINDERS = ["unreadable", "exact_duplicate", "near_duplicate", "leakage", "quality", "label_error", "outlier",
                   "objects", "dataset"]


class ObjectIssuesConfig(_Strict):
    """The objects finder (pixelscope.issues.objects): boxes of the objects table."""

    duplicate_iou: float = Field(default=0.9, gt=0, le=1)  # two boxes of one class overlapping this much: one object twice
    overlap_iou: float = Field(default=0.7, gt=0, le=1)  # boxes of two classes overlapping this much: which is it?
    input_size: int = Field(default=640, gt=0)  # the model's input: the image's longer side is scaled to this ...
    min_side_px: float = Field(default=8.0, gt=0)  # ... and a box whose shorter side is below this there is too small
    rare_share: float = Field(default=0.01, gt=0, lt=1)  # a class with less than this share of the objects is rare
    box_issue_max_score: float = Field(default=0.5, gt=0, lt=1)  # cleanlab per-box score below this: a label issue
    overlooked_min_score: float = Field(default=0.95, gt=0, le=1)  # a prediction this sure matching no annotation
    no_objects_min_share: float = Field(default=0.5, gt=0, le=1)  # flag images without objects only when at
    # least this share of the images has some (a dataset of mostly empty frames is not annotated that way)


class DuplicateModel(_Strict):
    """P(two images are near-duplicates) = sigmoid(intercept + hamming * h + cosine * c + log_side * s
    + hamming_log_side * h * s + cosine_log_side * c * s), with h = pHash Hamming distance / 64 (the
    smaller of plain and mirrored), c = embedding cosine and s = log2 of the smaller image's longer side
    (at least 8 px): a 32 x 32 image's hash and embedding say less than a photo's, and the size terms
    let the model weigh them so. Fit by benchmarks/bench_duplicates.py (logistic regression on the
    candidate pairs of the calibration sources only; BENCHMARKS.md says which)."""

    intercept: float = -1.572
    hamming: float = -2.937
    cosine: float = 0.033
    log_side: float = -1.132
    hamming_log_side: float = -11.726
    cosine_log_side: float = 6.726


class IssuesConfig(_Strict):
    finders: list[str] = Field(default_factory=lambda: list(DEFAULT_FINDERS))
    objects: ObjectIssuesConfig = Field(default_factory=ObjectIssuesConfig)
    plugins: list[str] = Field(default_factory=list)
    # near-duplicates. fused (default): pairs within candidate_max_hamming pHash bits or candidate_min_cosine
    # embedding cosine are scored by near_duplicate_model and kept at >= near_duplicate_min_probability.
    # thresholds: either hash_max_distance or embedding_min_cosine makes a pair (also the rule for an
    # image without an embedding). Every group member is a pair with its representative.
    # Chosen by benchmarks/bench_duplicates.py (BENCHMARKS.md)
    near_duplicate_rule: Literal["fused", "thresholds"] = "fused"
    near_duplicate_model: DuplicateModel = Field(default_factory=DuplicateModel)
    near_duplicate_min_probability: float = Field(default=0.8, gt=0, lt=1)
    candidate_max_hamming: int = Field(default=10, ge=0, le=32)
    candidate_min_cosine: float = Field(default=0.6, gt=0, le=1)
    hash_max_distance: int = Field(default=14, ge=0, le=32)
    embedding_min_cosine: float = Field(default=0.75, gt=0, le=1)
    # one kNN graph for all finders: exact faiss search up to this many images (measured: 10k x 1280-d
    # ~6 s, 20k ~27 s on 2 cores, BENCHMARKS.md); above, IVF over a reduce_dim PCA, re-scored exactly
    exact_index_max: int = Field(default=20_000, ge=1)
    reduce_dim: int = Field(default=128, ge=2)
    representative: list[str] = Field(default_factory=lambda: ["-pixels", "border", "-central", "-sharpness", "clipping", "-exif",
                                                               "path"])
    # label errors: out-of-sample kNN class probabilities -> cleanlab's find_label_issues
    knn: int = Field(default=10, ge=1)
    min_per_class: int = Field(default=5, ge=2)
    # quality: absolute thresholds
    # overexposed and blurry bars: chosen by benchmarks/bench_quality.py (leave-one-source-out, BENCHMARKS.md);
    # dark's predates it and is scored there as is
    dark_max_brightness: float = Field(default=0.12, ge=0, le=1)
    bright_min_brightness: float = Field(default=0.5, ge=0, le=1)  # overexposed: the mean as second signal
    overexposed_min_clipped: float = Field(default=0.3, ge=0, le=1)  # share of pixels with a channel >= 250
    low_information_max_entropy: float = Field(default=2.5, ge=0, le=8)
    tiny_min_side: int = Field(default=224, ge=1)
    grayscale_max_share: float = Field(default=0.5, ge=0, le=1)  # grayscale is odd while rarer than this
    # quality: relative thresholds, from the reference profile's quantiles (else this dataset's)
    blurry_mode: Literal["absolute", "reference"] = "absolute"  # reference: below blurry_quantile of the reference
    blurry_max_detail: float = Field(default=0.05, gt=0)  # absolute: Laplacian variance / (255 x RMS contrast)^2
    blurry_quantile: float = Field(default=0.02, gt=0, lt=1)
    odd_quantile: float = Field(default=0.005, gt=0, lt=0.5)  # aspect ratio and megapixels outside [q, 1-q]
    outlier_quantile: float = Field(default=0.99, gt=0, lt=1)
    # dataset level
    imbalance_min_ratio: float = Field(default=0.5, gt=0, le=1)  # rarest class share / uniform share
    spurious_min_gain: float = Field(default=0.25, gt=0, le=1)  # balanced accuracy above chance, one feature

    @property
    def graph_k(self) -> int:
        """Neighbours kept per image: twice issues.knn, so label votes can pass over unlabeled ones."""
        return max(2 * self.knn, 20)


class ValidateConfig(_Strict):
    suites: Path = Path("expectations")
    results: Path = Path("reports/validate")
    reference: Path | None = None
    reference_rev: str | None = None
    on_failure: Literal["fail", "warn"] = "fail"


class VersioningConfig(_Strict):
    remote_name: str = "local"
    remote_url: str = "dvc-remote"
    push: bool = True
    git_commit: bool = False


ExportFormat = Literal["imagefolder", "torchvision", "webdataset", "parquet", "coco", "yolo"]  # coco, yolo: with objects
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("imagefolder", "torchvision", "webdataset", "parquet")


class SplitsConfig(_Strict):
    keep_folder_splits: bool = True  # a raw folder's train/val/test is kept: a frozen test set is never reshuffled
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: str = "pixelscope"  # part of the split hash: change it to draw other (still stable) splits

    @model_validator(mode="after")
    def _ratios(self) -> SplitsConfig:
        if not self.ratios or any(v < 0 for v in self.ratios.values()) or abs(sum(self.ratios.values()) - 1) > 1e-6:
            raise ValueError(f"ratios must be >= 0 and sum to 1 (got {self.ratios})")
        bad = [k for k in self.ratios if not k.isidentifier()]
        if bad:
            raise ValueError(f"split names must be plain words (got {bad})")
        return self


class BalanceConfig(_Strict):
    max_per_class: int | None = Field(default=None, ge=1)
    target_share: dict[str, float] | None = None  # class -> share of the curated set (others: what is left)
    keep: Literal["diverse", "quality", "random"] = "diverse"  # which images survive a cap
    order: list[str] | None = None  # best first, for keep: quality (and where diverse starts); null = issues.representative
    seed: int = 0  # for keep: random


class MlflowConfig(_Strict):
    enabled: bool = False  # `pixelscope curate --mlflow` turns it on for one run
    tracking_uri: str = "sqlite:///mlflow.db"  # MLflow's own default backend (its file store is deprecated)
    experiment: str = "pixelscope-curate"
    artifact_location: Path | None = None  # for a new experiment; null = MLflow's default (./mlruns)


class CurateConfig(_Strict):
    # images flagged by these finders (issues.parquet columns) are left out; duplicates keep their representative
    exclude: list[str] = Field(default_factory=lambda: ["unreadable", "exact_duplicate", "near_duplicate", "blurry",
                                                        "dark"])
    where: str | None = None  # SQL WHERE over the manifest joined with the issues table (DuckDB), e.g. "width >= 224"
    # with annotations: which objects go out with the included images (SQL over the objects table's
    # columns, e.g. "rel_area >= 0.0005 AND NOT crowd"), and a class map applied first (a class
    # mapped to null is dropped; classes not named stay as they are)
    objects_where: str | None = None
    object_classes: dict[str, str | None] = Field(default_factory=dict)
    slices: dict[str, str] = Field(default_factory=dict)  # name -> WHERE expression, recorded per image
    plugins: list[str] = Field(default_factory=list)  # modules with @curate_filter / @sort_key functions
    filters: list[str] = Field(default_factory=list)  # plugin filters to apply, in order (True = keep)
    label_fixes: Path | None = None  # CSV: id or path, new_label (the older way; curate.decisions supersedes it)
    decisions: Path | None = Path("curation/decisions.jsonl")  # review decisions (`pixelscope decide`, the dashboard)
    accept_suggested_above: float | None = Field(default=None, ge=0, le=1)  # take label_error suggestions >= score
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    formats: list[ExportFormat] = Field(default_factory=lambda: list(EXPORT_FORMATS))
    link: Literal["hardlink", "copy", "symlink"] = "hardlink"  # torchvision tree: how files get there
    output: Url | None = None  # exports streamed into a store (s3://bucket/prefix) instead of paths.curated
    shard_size: int = Field(default=1000, ge=1)  # images per webdataset / parquet shard
    workers: int = Field(default=0, ge=0)  # processes writing webdataset / parquet shards (0 = one per core)
    metadata_features: list[str] = Field(default_factory=lambda: ["width", "height", "brightness_mean", "sharpness"])
    pretty_name: str | None = None
    license: str = "other"
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @field_validator("output", mode="before")
    @classmethod
    def _store(cls, v: Any) -> Any:
        if v is not None and not (isinstance(v, str) and is_url(v)):
            raise ValueError(f"a store prefix such as s3://bucket/curated (got {v!r}; a local folder is paths.curated)")
        return v


class MonitorConfig(_Strict):
    drop: Path | Url | None = None  # the folder (or s3://... prefix) a scheduled run monitors (new images arriving)
    window: Literal["day", "week"] = "week"  # rolling profile per calendar window (UTC)
    on_drift: Literal["fail", "warn"] = "fail"  # a drifting drop fails the run, or is recorded as a warning
    cron: str | None = None  # `make serve` schedules the monitor deployment with this cron; null = no schedule

    @field_validator("drop", mode="before")
    @classmethod
    def _location(cls, v: Any) -> Any:
        return as_location(v) if isinstance(v, str) else v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {v!r}")
        return v


class StorageConfig(BaseModel):
    """How pixelscope reaches an object store when paths.raw is a URL. No credentials here, ever:
    they come from the store's standard places (for S3: environment, AWS_PROFILE, instance role)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = None  # an S3-compatible store (MinIO, Ceph, R2, ...); else AWS_ENDPOINT_URL or AWS
    region: str | None = None
    anonymous: bool = False  # public buckets: unsigned requests
    version_aware: bool = False  # list object version ids (a versioned bucket)
    concurrency: int = Field(default=16, ge=1, le=256)  # objects in flight per worker process
    retries: int = Field(default=5, ge=0, le=20)  # per object, with exponential backoff, on throttling / 5xx / timeouts
    timeout_s: float = Field(default=60.0, gt=0)  # connect and read timeout per request


class PipelineConfig(_Strict):
    runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    dask_workers: int = Field(default=2, ge=1)
    shard_size: int = Field(default=500, ge=1)
    retries: int = Field(default=2, ge=0)
    retry_delay_s: float = Field(default=2.0, ge=0)


class Params(_Strict):
    # `validate` is a BaseModel method name: the field is validate_, spelled `validate` in params.yaml
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    paths: PathsConfig = Field(default_factory=PathsConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    issues: IssuesConfig = Field(default_factory=IssuesConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    curate: CurateConfig = Field(default_factory=CurateConfig)
    versioning: VersioningConfig = Field(default_factory=VersioningConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        shown = e["type"] != "extra_forbidden" and not isinstance(e.get("input"), dict)
        lines.append(f"  {key}: {msg}" + (f" (got {e['input']!r})" if shown else ""))
    return "\n".join(lines)


def parse_params(data: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping; raises ConfigError naming each wrong key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_params(path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read params.yaml (defaults when it does not exist and no path was demanded)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"{p}: a folder, not a params file")
        if p.exists():
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{p}: not valid YAML: {e}") from None
            except UnicodeDecodeError as e:
                raise ConfigError(f"{p}: not a text file (byte {e.start} is not UTF-8)") from None
            except OSError as e:
                raise ConfigError(f"{p}: cannot read the params file ({e.strerror})") from None
        elif str(path) != "params.yaml":
            raise ConfigError(f"{p}: params file not found")
    if not isinstance(data, dict):  # checked before overrides are merged in (they used to hide it)
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    if overrides:
        data = _deep_merge(data, overrides)
    return parse_params(data, source=str(path or "params"))


def _deep_merge(base: Any, extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in extra.items():
        out[k] = _deep_merge(out.get(k), v) if isinstance(v, dict) else v
    return out


def dotted_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ['ingest.workers=2', ...] into a nested dict. A value is parsed as a YAML scalar, except
    for a key whose type is text (a filter, a path): that takes the raw string, so
    `curate.where='a' = label` is the SQL it says, not a YAML error."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r}: expected KEY=VALUE, e.g. ingest.workers=2")
        key, value = pair.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        text, nullable = _text_key(parts)
        if text:
            node[parts[-1]] = None if nullable and value.strip() in ("", "~", "null", "Null", "NULL") else value
            continue
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key.strip()}: {value!r} is not a value ({str(e).splitlines()[0]})") from None
    return out


def _text_key(parts: list[str]) -> tuple[bool, bool]:
    """Whether the params key at `parts` holds a string or a path, and whether it may be null, by the
    model's types."""
    model: Any = Params
    annotation: Any = None
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields:
            return False, False
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return False, False
        annotation = field.annotation
        model = annotation
    kinds = set(get_args(annotation)) or {annotation}
    return bool(kinds & {str, Path, Url}) and kinds <= {str, Path, Url, type(None)}, type(None) in kinds


def set_params(path: str | Path, overrides: dict[str, Any]) -> Params:
    """Validate overrides, then write them into the params file, keeping its comments and order."""
    from ruamel.yaml import YAML

    path = Path(path)
    params = load_params(path, overrides)
    rt = YAML()  # round-trip
    data = rt.load(path) if path.exists() else None
    data = data if data is not None else {}
    _set(data, overrides)
    with open(path, "w") as fh:
        rt.dump(data, fh)
    return params


def _set(node: Any, extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict):
            if not isinstance(node.get(k), dict):
                node[k] = {}
            _set(node[k], v)
        else:
            node[k] = v
