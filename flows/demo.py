"""The demo project `make demo` builds: two recorded versions of a dataset worth reviewing.

    python -m flows.demo                 # demo/ (rebuilt from scratch), 40 images per class
    python -m flows.demo --project /tmp/d --per-class 12

`demo/` is a project of its own (git + DVC, ignored by this repository), laid out as a user's
would be: params.yaml, dvc.yaml, expectations/, curation/decisions.jsonl and the raw folder.

1. v1: the showcase set (`pixelscope.demo.build_showcase`: five classes, two sources, train /
   val / test folders, planted copies, leaks, label flips, dark, blurry and broken files, a
   model's predictions) goes through the whole pipeline; committed and tagged `v1`.
2. v1 becomes the drift reference (`pixelscope reference set v1`).
3. v2: a darker, blurrier, partly grayscale batch with twice the cats and no motorcycles
   arrives under `<source>/incoming/`; the pipeline runs again (ingest, preprocess and embed
   only do the new images' work) and drifts against v1; committed and tagged `v2`.
4. `pixelscope history` records both versions and publish carries them to the dashboard
   (the republished bundle is committed with DVC, so `dvc status` stays clean).

The demo's validation is `warn`: its quality suite fails on the planted leaks, on purpose, and
the dashboard shows that instead of stopping before publish. `make dashboard` serves it with
review actions on (decisions go to demo/curation/decisions.jsonl; Apply re-curates demo/).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.pipeline import run_pipeline
from pixelscope.config import load_params, set_params
from pixelscope.errors import InputMissing, PixelscopeError
from pixelscope.pipeline.stages import dvc_yaml, stage

REPO = Path(__file__).resolve().parents[1]
MARKER = ".pixelscope-demo"  # a folder with this file is a demo project: `make demo` may rebuild it
# what makes the demo's params differ from the template's (params.yaml at the repository root)
DEMO_PARAMS: dict[str, Any] = {"validate": {"on_failure": "warn"}, "profile": {"predictions": "data/predictions.csv"}}
GITIGNORE = "/dvc-remote/\n/.pixelscope/\n/data/new_batch/\n/mlflow.db\n/mlruns/\n"


def sh(args: list[str], cwd: Path) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise PixelscopeError(f"{' '.join(args)} failed in {cwd}: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def dvc(project: Path, *args: str) -> str:
    return sh([sys.executable, "-m", "dvc", *args], project)


def new_project(project: Path, params: dict[str, Any] | None = None) -> None:
    """An empty project (git + DVC) with the repository's params (changed by `params`, the demo's by
    default), stage table, suites and an empty decisions file; the package source is copied too,
    because dvc.yaml lists the modules each stage imports as its code deps."""
    if project.exists():
        if not (project / MARKER).exists():
            raise InputMissing(f"{project} exists and is not a demo project (no {MARKER}): choose another folder")
        shutil.rmtree(project)
    project.mkdir(parents=True)
    (project / MARKER).write_text("built by `make demo` (python -m flows.demo); rebuilt from scratch on the next run\n")
    for name in ("params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, project / name)
    for name in ("pixelscope", "expectations", "curation"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    set_params(project / "params.yaml", DEMO_PARAMS if params is None else params)
    (project / "dvc.yaml").write_text(dvc_yaml(project / "params.yaml"))
    (project / ".gitignore").write_text(GITIGNORE)
    sh(["git", "init", "-q"], project)
    if not _has_identity(project):  # decisions name their author: git's user.name when there is one
        sh(["git", "config", "user.name", "pixelscope demo"], project)
        sh(["git", "config", "user.email", "demo@localhost"], project)
    dvc(project, "init", "-q")
    commit(project, "demo project: params, stage table, suites, an empty decisions file")


def _has_identity(project: Path) -> bool:
    r = subprocess.run(["git", "config", "user.name"], cwd=project, capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def commit(project: Path, message: str, tag: str | None = None) -> None:
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", message], project)
    if tag:
        sh(["git", "tag", "-f", tag], project)


def arrive(new_batch: Path, raw: Path) -> int:
    """Move the new batch (<source>/<label>/*.jpg) into the raw folder as <source>/incoming/<label>/."""
    moved = 0
    for f in sorted(new_batch.rglob("*.jpg")):
        source, label = f.relative_to(new_batch).parts[:2]
        dest = raw / source / "incoming" / label / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        f.rename(dest)
        moved += 1
    shutil.rmtree(new_batch)
    return moved


@flow(name="demo")
def demo(project: str = "demo", per_class: int = 40) -> dict[str, Any]:
    """Build the demo project: v1 through the whole pipeline, v1 as the reference, a shifted batch
    arriving as v2 through the pipeline again, both versions in the history and on the dashboard."""
    from pixelscope.demo import build_showcase, write_predictions
    from pixelscope.versions.history import record_history

    log = get_run_logger()
    root = Path(project).resolve()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    new_project(root)
    raw, new_batch = root / "data" / "raw", root / "data" / "new_batch"
    info = build_showcase(raw, new_batch, per_class=per_class)
    seconds["images"] = round(time.perf_counter() - t0, 1)
    log.info("demo: %d images in %s, %d in the batch that arrives later", info["images"], raw, info["new_batch"])

    t = time.perf_counter()
    v1 = run_pipeline(load_params(root / "params.yaml"), root)
    commit(root, f"v1: {info['images']} images, the pipeline's outputs", tag="v1")
    seconds["v1"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    set_params(root / "params.yaml", {"validate": {"reference_rev": "v1"}})  # = pixelscope reference set v1
    moved = arrive(new_batch, raw)
    planted_dark = {p: 0.75 for p in info["planted"]["dark"]}
    incoming = {f.relative_to(raw).as_posix(): 0.35 for f in raw.glob("*/incoming/*/*.jpg")}  # the model does worse there
    write_predictions(raw, {**incoming, **planted_dark})
    params = load_params(root / "params.yaml")
    v2 = run_pipeline(params, root)
    commit(root, f"v2: {moved} darker, blurrier images arrive; drift against v1", tag="v2")
    seconds["v2"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    history = record_history(params, root)
    stage("publish").run(params, root)  # the bundle now carries the history ...
    dvc(root, "commit", "-f", "-q", "publish")  # ... and dvc.lock says so
    commit(root, "the history of v1 and v2, published", tag="v2")
    seconds["history"] = round(time.perf_counter() - t, 1)
    seconds["total"] = round(time.perf_counter() - t0, 1)
    log.info("demo: done in %.0f s (%s)", seconds["total"], seconds)
    return {"project": str(root), "images": info["images"] + moved, "planted": info["planted"], "seconds": seconds,
            "v1": v1["ran"], "v2": v2["ran"], "history": history.counts}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="demo", help="the demo project's folder (rebuilt from scratch)")
    ap.add_argument("--per-class", type=int, default=40, help="images per class in v1")
    a = ap.parse_args(argv)
    try:
        result = demo(a.project, a.per_class)
    except PixelscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"demo project: {result['project']} ({result['images']} images, two versions: v1, v2) "
          f"in {result['seconds']['total']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
