"""Apply review decisions from the dashboard: curate, then publish, in a process of its own, with
its progress in a small JSON status file the dashboard polls.

    python -m pixelscope.curate.apply --project P --params params.yaml --status S

The same step functions as `pixelscope curate` and `pixelscope publish` (so `dvc repro`
reproduces what Apply made); the ledger before the run is kept beside the status file so the
dashboard can show what changed (added / dropped / moved / relabelled). A failing step — a
validation of the new set included — is written to the status as an error, never swallowed.
The dashboard stays light: it never imports the steps, it starts this module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pixelscope.io.atomic import write_bytes_atomic

STEPS = ("curate", "publish")


def status_path(project: Path) -> Path:
    return project / ".pixelscope" / "apply" / "status.json"


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, status: dict[str, Any]) -> None:
    write_bytes_atomic(path, json.dumps(status, indent=1).encode())


def run(project: Path, params_file: Path, status_file: Path) -> int:
    from pixelscope.config import load_params
    from pixelscope.curate.diff import diff, read_curated
    from pixelscope.curate.step import curate_step
    from pixelscope.errors import PixelscopeError
    from pixelscope.publish.step import publish_step

    status: dict[str, Any] = {"state": "running", "step": "starting", "pid": os.getpid(), "started": time.time(),
                              "runner": "a local process (python -m pixelscope.curate.apply)"}
    _write(status_file, status)
    before = status_file.parent / "before"
    try:
        params = load_params(project / params_file, {})
        curated = params.paths.under(project).curated
        shutil.rmtree(before, ignore_errors=True)
        old = None
        if (curated / "curation.parquet").exists():
            before.mkdir(parents=True)
            for name in ("curation.parquet", "curate.json"):
                if (curated / name).exists():
                    shutil.copy2(curated / name, before / name)
            old = read_curated(params, project, folder=before)
        seconds = status.setdefault("seconds", {})
        seconds["start"] = round(time.time() - status["started"], 3)  # params and the ledger snapshot (imports before)
        for step, fn in (("curate", curate_step), ("publish", publish_step)):
            status.update(step=step, progress=STEPS.index(step) / len(STEPS))
            _write(status_file, status)
            t0 = time.perf_counter()
            result = fn(params, project)
            seconds[step] = round(time.perf_counter() - t0, 3)
            status.setdefault("results", {})[step] = result.summary
        t0 = time.perf_counter()
        new = read_curated(params, project)
        status["diff"] = diff(old[0], new[0], old[1], new[1]) if old is not None else None
        seconds["diff"] = round(time.perf_counter() - t0, 3)
        status["validation"] = new[1].get("validation")
        status.update(state="done", step="done", progress=1.0, finished=time.time())
        _write(status_file, status)
        return 0
    except PixelscopeError as e:
        status.update(state="failed", error=str(e), finished=time.time())
    except Exception as e:  # noqa: BLE001 - a bug: the dashboard shows it with its traceback
        status.update(state="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
                      finished=time.time())
    _write(status_file, status)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixelscope.curate.apply", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--status", type=Path, default=None)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    return run(project, args.params, args.status or status_path(project))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
