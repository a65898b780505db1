"""Orchestration overhead and worker scaling, on the 5,000-image benchmark set.

    python benchmarks/bench_pipeline.py [--n 5000]

1. Bare steps: every stage's step function (ingest, preprocess, embed, profile, validate, publish),
   in-process: what the CLI and `dvc repro` run.
2. Prefect pipeline flow against a running Prefect server (as when triggered from the UI),
   including DVC's stale checks and dvc.lock updates; raw-data versioning timed apart.
   The Prefect task cache is emptied first, so every shard is really computed.
   For context, `dvc repro` of the same stages (same DVC bookkeeping, one process per stage).
3. Worker scaling of the CPU-bound step (ingest): ingest.workers 1 vs 2, bare and in Prefect.

Results are appended to benchmarks/results/pipeline.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pixelscope-bench-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def sh(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_project(n: int) -> Path:
    from bench_profile import image_set

    images = image_set(n)
    project = HERE / ".work" / f"pipeline-project-{n}"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "pixelscope", project / "pixelscope", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "expectations", project / "expectations")
    sh("git", "init", "-q", cwd=project)
    sh("git", "-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-q", "--allow-empty", "-m", "x", cwd=project)
    sh(sys.executable, "-m", "dvc", "init", "-q", cwd=project)
    shutil.copytree(images, project / "data" / "raw")
    return project


def wipe_outputs(project: Path) -> None:
    for p in ("data/interim", "data/processed", "reports", "dvc.lock"):
        q = project / p
        shutil.rmtree(q) if q.is_dir() else q.unlink(missing_ok=True)
    storage = Path(os.environ["PREFECT_HOME"]) / "storage"
    shutil.rmtree(storage, ignore_errors=True)


def set_workers(project: Path, workers: int) -> None:
    from flows.common import apply_overrides

    apply_overrides(project, {"ingest": {"workers": workers}})


def bare(project: Path, workers: int) -> dict:
    """Every stage's step function in turn, in-process: what the pipeline runs, minus orchestration."""
    from pixelscope.config import load_params
    from pixelscope.pipeline.stages import DVC_STAGES

    params = load_params(project / "params.yaml", {"ingest": {"workers": workers}})
    times, images = {}, 0
    t0 = time.perf_counter()
    for stage in DVC_STAGES:
        t = time.perf_counter()
        result = stage.run(params, project)
        times[f"{stage.name}_s"] = time.perf_counter() - t
        images = images or result.counts.get("files_seen", 0)
    total = time.perf_counter() - t0
    return {**{k: round(v, 2) for k, v in times.items()}, "total_s": round(total, 2), "images": images}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    project = make_project(args.n)

    port = 4291
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    from flows.serve import wait_ready

    wait_ready(os.environ["PREFECT_API_URL"])
    from flows.pipeline import pipeline
    from flows.version_raw_data import version_raw_data_flow

    results = {}
    try:
        t0 = time.perf_counter()
        version_raw_data_flow(str(project))
        results["version_raw_data_s"] = round(time.perf_counter() - t0, 2)
        for workers in (2, 1):
            set_workers(project, workers)
            wipe_outputs(project)
            results[f"bare_w{workers}"] = bare(project, workers)
            wipe_outputs(project)
            t0 = time.perf_counter()
            r = pipeline(str(project), version_data=False)
            results[f"pipeline_w{workers}"] = {"total_s": round(time.perf_counter() - t0, 2), "ran": r["ran"],
                                               "stage_s": r["seconds"]}
            t0 = time.perf_counter()
            again = pipeline(str(project), version_data=False)
            results[f"pipeline_w{workers}_rerun_s"] = round(time.perf_counter() - t0, 2)
            assert again["ran"] == []
            if workers == 2:  # the other way users run the same stages, with the same DVC bookkeeping
                wipe_outputs(project)
                t0 = time.perf_counter()
                sh(sys.executable, "-m", "dvc", "repro", "-q", "--no-run-cache", cwd=project)
                results["dvc_repro_w2_s"] = round(time.perf_counter() - t0, 2)
    finally:
        os.killpg(server.pid, 15)
    b, p = results["bare_w2"], results["pipeline_w2"]
    results["overhead_pct"] = round(100 * (p["total_s"] / b["total_s"] - 1), 1)
    results["overhead_vs_dvc_repro_pct"] = round(100 * (p["total_s"] / results["dvc_repro_w2_s"] - 1), 1)
    results["speedup_bare_ingest_1_to_2"] = round(results["bare_w1"]["ingest_s"] / results["bare_w2"]["ingest_s"], 2)
    results["speedup_pipeline_ingest_1_to_2"] = round(results["pipeline_w1"]["stage_s"]["ingest"]
                                                      / results["pipeline_w2"]["stage_s"]["ingest"], 2)
    results.update(n=args.n, machine=f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
                   date=datetime.now(UTC).isoformat(timespec="seconds"))
    print(json.dumps(results, indent=1))
    with open(HERE / "results" / "pipeline.jsonl", "a") as fh:
        fh.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
