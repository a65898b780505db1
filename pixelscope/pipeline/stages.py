"""The stages, listed once. The CLI, dvc.yaml, the Prefect flows, `serve` and the tests read this.

Each stage names its step (`module:function`, imported only when it runs), the params it
reads, its data deps and outs, and whether it keeps metrics. Its *code* deps are derived:
the pixelscope modules its step module imports (statically, nested imports included), so
editing a module reruns only the stages that use it, and the Prefect shard cache keys hash
the same files. dvc.yaml is generated from this table:

    python -m pixelscope.pipeline.stages --write    # regenerate dvc.yaml
    python -m pixelscope.pipeline.stages --check    # exit 1 if the committed dvc.yaml is stale
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pixelscope.config import Params
from pixelscope.pipeline.steps import ProgressFn, StepResult

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../pixelscope
SOURCE_ROOT = PACKAGE_ROOT.parent  # what `pixelscope/...` paths are relative to
# Packages whose modules serve different stages are listed module by module; the others whole.
BY_MODULE = ("pixelscope/io", "pixelscope/pipeline", "pixelscope/validate")


@dataclass(frozen=True)
class Out:
    path: str
    persist: bool = False  # incremental stores: DVC must not delete them before the stage runs
    cache: bool = True


@dataclass(frozen=True)
class Stage:
    name: str
    step: str  # "module:function", called as step(params, project, progress=...)
    doc: str
    params: tuple[str, ...]
    deps: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    metrics: bool = False  # writes paths.metrics/<name>.json
    sharded: bool = False  # exposes plan / part / finish (the flow maps parts over tasks)
    dvc: bool = True  # a dvc.yaml stage (versioning the raw data is not: it makes the data dep)
    flow: str = ""  # flow and deployment name (default: the stage name)
    command: str = ""  # CLI command (default: the stage name)
    optional_deps: tuple[str, ...] = ()  # dotted params keys naming a file dep when set (e.g. a label-fixes CSV)

    @property
    def flow_name(self) -> str:
        return self.flow or self.name

    @property
    def command_name(self) -> str:
        return self.command or self.name

    @property
    def module(self) -> str:
        return self.step.split(":")[0]

    def function(self) -> Any:
        module, name = self.step.split(":")
        return getattr(importlib.import_module(module), name)

    def run(self, params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None,
            **options: Any) -> StepResult:
        """Run the step; options are the step's own keyword arguments (e.g. curate's dry_run). Raw
        images in a store are read with params.storage (pixelscope.io.location)."""
        from pixelscope.io.location import configure  # imported here: the readers load the decoders

        configure(params.storage)
        return self.function()(params, project, progress=progress, **options)

    def code(self) -> list[str]:
        """The source this stage's step runs: dvc.yaml deps and part of the shard cache keys."""
        return code_deps(self.module)

    def code_hash(self) -> str:
        h = hashlib.sha256()
        for dep in self.code():
            path = SOURCE_ROOT / dep
            for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
                h.update(f.relative_to(SOURCE_ROOT).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]


STAGES: tuple[Stage, ...] = (
    Stage("version", "pixelscope.track.step:version_step",
          "Track the raw folder with DVC (`dvc add`), push it to the default remote, print its version.",
          params=("versioning",), dvc=False, flow="version-raw-data", command="version-data"),
    Stage("ingest", "pixelscope.ingest.step:ingest_step",
          "Read every file of the raw folder into a Parquet manifest: metadata, EXIF, features, or an error row.",
          params=("ingest.labels", "ingest.labels_csv", "ingest.exclude", "ingest.max_image_pixels", "ingest.max_file_bytes",
                  "ingest.exif_errors", "features"),
          deps=("${paths.raw}",), outs=(Out("${paths.manifest}"),), metrics=True, sharded=True),
    Stage("objects", "pixelscope.annotations.step:objects_step",
          "Read the detection / segmentation annotations (ingest.annotations: COCO, YOLO, VOC, masks) into the "
          "objects table, each object checked against its image.",
          params=("ingest.annotations", "features.working_size", "ingest.max_image_pixels"), deps=("${paths.manifest}",),
          optional_deps=("ingest.annotations.path", "ingest.annotations.predictions"),
          outs=(Out("${paths.objects}"), Out("${paths.object_images}"), Out("${paths.predicted_objects}")), metrics=True),
    Stage("preprocess", "pixelscope.embed.step:preprocess_step",
          "Decode, orient and transform new manifest images into model-ready uint8 tensors (paths.tensors).",
          params=("preprocess.transforms", "preprocess.plugins"),
          deps=("${paths.manifest}",),
          outs=(Out("${paths.tensors}", persist=True),),  # incremental: only ids missing from the store are computed
          metrics=True),
    Stage("embed", "pixelscope.embed.step:embed_step",
          "Embed new manifest images with embed.model (paths.embeddings) and write the 2-D projection.",
          params=("preprocess.transforms", "preprocess.plugins", "embed.model", "embed.weights", "embed.plugins",
                  "embed.projection", "embed.clusters", "embed.cluster_min_size", "embed.semantic"),
          deps=("${paths.manifest}", "${paths.tensors}"), outs=(Out("${paths.embeddings}", persist=True),),
          metrics=True),
    Stage("profile", "pixelscope.profile.step:profile_step",
          "Build the mergeable sketch profile of the manifest (overall, per segment, embeddings).",
          params=("profile", "embed.sample_size", "issues.knn", "issues.exact_index_max", "issues.reduce_dim"),
          deps=("${paths.manifest}", "${paths.embeddings}", "${paths.objects}"), outs=(Out("${paths.profile}"),),
          metrics=True,
          sharded=True, optional_deps=("profile.predictions",)),
    Stage("issues", "pixelscope.issues.step:issues_step",
          "Find what is wrong with each image: duplicates, near-duplicates, leakage, label errors, quality, outliers.",
          params=("issues", "validate.reference", "validate.reference_rev"),
          deps=("${paths.manifest}", "${paths.embeddings}", "${paths.objects}"),
          outs=(Out("${paths.issues}"), Out("${paths.issue_pairs}"), Out("${paths.issues_summary}"),
                Out("${paths.neighbours}")), metrics=True),
    Stage("validate", "pixelscope.validate.step:validate_step",
          "Run the expectation suites (quality over the manifest and its issues, drift against the reference) with GX.",
          params=("validate", "drift"),
          deps=("${paths.manifest}", "${paths.issues}", "${paths.profile}", "${validate.suites}"),
          outs=(Out("${validate.results}", cache=False),)),
    Stage("curate", "pixelscope.curate.step:curate_step",
          "Apply the curation recipe (curate:): the ledger of every image, stable group-aware splits, and the exports.",
          params=("curate", "issues.representative", "validate.on_failure"),
          optional_deps=("curate.label_fixes", "curate.decisions"),
          deps=("${paths.manifest}", "${paths.issues}", "${paths.raw}", "${validate.results}/results.json",
                "${validate.suites}", "${paths.objects}", "${paths.object_images}"),
          outs=(Out("${paths.curated}"),), metrics=True),
    Stage("publish", "pixelscope.publish.step:publish_step",
          "Write the results bundle (reports/publish/) the dashboard reads: summaries, tables, map, thumbnails.",
          params=("ingest.max_image_pixels", "ingest.workers", "profile.predictions"), optional_deps=("profile.predictions",),
          deps=("${paths.raw}", "${paths.manifest}", "${paths.profile}", "${paths.objects}", "${paths.predicted_objects}",
                "${paths.metrics}/ingest.json",
                "${paths.metrics}/profile.json", "${paths.metrics}/embed.json", "${paths.embeddings}",
                "${paths.issues_summary}", "${paths.neighbours}", "${validate.results}", "${paths.curated}/curate.json",
                "${paths.curated}/curation.parquet"),
          outs=(Out("${paths.publish}", persist=True),)),  # persist: thumbnails are made once per id
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
DVC_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if s.dvc)


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; stages: {', '.join(BY_NAME)}") from None


# --- code deps: the static import closure of a module, inside the package ----------------------


def _module_file(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (SOURCE_ROOT / rel / "__init__.py", SOURCE_ROOT / rel.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Every pixelscope module `path` imports anywhere (function bodies included)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == "pixelscope" and _module_file(m) is not None}


@cache
def module_closure(module: str) -> frozenset[str]:
    """module and every pixelscope module it (transitively) imports, with their parent packages."""
    todo, seen = [module], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = _module_file(m)
        if path is not None:
            todo += sorted(_imports(path, m))
    return frozenset(seen)


def code_deps(module: str) -> list[str]:
    """The closure as dvc.yaml deps: a subpackage as a whole, the top level and BY_MODULE by file."""
    deps = set()
    for m in module_closure(module):
        path = _module_file(m)
        assert path is not None  # the closure holds only modules with a file
        rel = path.relative_to(SOURCE_ROOT).as_posix()
        parts = rel.split("/")
        folder = "/".join(parts[:2])
        if len(parts) > 2 and folder not in BY_MODULE:
            deps.add(folder)
        else:
            deps.add(rel)
    return sorted(deps)


# --- dvc.yaml -----------------------------------------------------------------------------

HEADER = """\
# GENERATED from pixelscope/pipeline/stages.py: edit the table there, then run
#   python -m pixelscope.pipeline.stages --write
# (a test fails while this file and the table disagree). Each stage runs the same step
# function as its Prefect flow and CLI command. ${...} come from params.yaml. Code deps are
# the pixelscope modules each step imports, so an edit reruns only the stages that use it.
"""


def _set_keys(params_file: Path) -> set[str]:
    """Dotted keys of params.yaml whose value is set (not null): which optional deps apply."""
    import yaml

    if not params_file.exists():
        return set()
    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif node is not None:
            out.add(prefix[:-1])

    walk(yaml.safe_load(params_file.read_text()) or {}, "")
    return out


def dvc_yaml(params_file: Path = Path("params.yaml")) -> str:
    """dvc.yaml from the table; a stage's optional deps (e.g. curate.label_fixes) are listed when
    params.yaml sets them, so editing that file reruns the stage (regenerate after setting one)."""
    import yaml

    given = _set_keys(params_file)
    stages: dict[str, Any] = {}
    for s in DVC_STAGES:
        optional = [f"${{{k}}}" for k in s.optional_deps if k in given]
        entry: dict[str, Any] = {"cmd": f"pixelscope {s.command_name} --quiet",
                                 "deps": [*s.deps, *optional, *s.code()]}
        if s.params:
            entry["params"] = list(s.params)
        entry["outs"] = [o.path if o.cache and not o.persist else
                         {o.path: {**({"persist": True} if o.persist else {}), **({"cache": False} if not o.cache else {})}}
                         for o in s.outs]
        if s.metrics:
            entry["metrics"] = [{f"${{paths.metrics}}/{s.name}.json": {"cache": False}}]
        stages[s.name] = entry
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def main(argv: list[str]) -> int:
    target = Path("dvc.yaml")  # the project's, in the working directory
    text = dvc_yaml()
    if argv == ["--write"]:
        target.write_text(text)
        print(f"wrote {target}")
        return 0
    if argv == ["--check"]:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is not what pixelscope/pipeline/stages.py (and the optional deps params.yaml sets) "
                  "generates: run `python -m pixelscope.pipeline.stages --write`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["DVC_STAGES", "STAGES", "Out", "Stage", "code_deps", "dvc_yaml", "stage"]
