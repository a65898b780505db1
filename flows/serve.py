"""Serve the flows as deployments, so they can be triggered from the Prefect UI.

    make serve                     # starts a local Prefect server (SQLite, 127.0.0.1:4200) and serves
    python -m flows.serve --port 4200
    python -m flows.serve --no-server   # serve against the server PREFECT_API_URL points to

Deployments (all named `pixelscope`): pipeline, one per stage of the stage table
(pixelscope/pipeline/stages.py): version-raw-data, ingest, preprocess, embed, profile,
validate, publish; and monitor (flows/monitor.py), run on the cron schedule monitor.cron
of params.yaml when it is set (off by default), over monitor.drop. The pipeline and stage
flows take `project` (the repository folder) and `overrides` (nested params, e.g.
{"paths": {"raw": "data/new_batch"}}), which are validated and written to params.yaml so DVC
records what ran. Trigger one from the UI
(http://127.0.0.1:4200) or the CLI: prefect deployment run 'pipeline/pixelscope'.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tasks import settings  # noqa: F401  (project Prefect settings)


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"Prefect server at {url} did not become ready in {timeout:.0f}s")


def deployments(project: Path = settings.PROJECT):
    """The pipeline, one deployment per stage of the stage table, and the monitor (on the
    schedule monitor.cron of the project's params, when set)."""
    from flows.monitor import monitor
    from flows.pipeline import pipeline
    from flows.steps import FLOWS
    from pixelscope.config import load_params

    m = load_params(project / "params.yaml").monitor
    out = [f.to_deployment(name="pixelscope", parameters={"project": str(project)})
           for f in (pipeline, *FLOWS.values())]
    drop = {"drop": str(m.drop)} if m.drop else {}
    out.append(monitor.to_deployment(name="pixelscope", parameters={"project": str(project), **drop}, cron=m.cron))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--no-server", action="store_true", help="use the server PREFECT_API_URL points to")
    ap.add_argument("--project", type=Path, default=settings.PROJECT,
                    help="the project the deployments run on by default (its params.yaml: monitor.cron)")
    args = ap.parse_args()
    server = None
    if not args.no_server:
        url = f"http://127.0.0.1:{args.port}"
        # the UI's API address comes from settings, not from --port: without these it calls :4200
        env = {**os.environ, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(args.port),
               "PREFECT_SERVER_UI_API_URL": f"{url}/api"}
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(args.port)], start_new_session=True, env=env)
        wait_ready(f"{url}/api")
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        print(f"Prefect UI: {url}", flush=True)
    from prefect import serve

    # Prefect's runner shuts down gracefully on SIGTERM but not on Ctrl-C: make Ctrl-C a SIGTERM
    signal.signal(signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    try:
        serve(*deployments(args.project.resolve()))  # blocks until Ctrl-C / SIGTERM
    finally:
        if server is not None:  # serve stops first, then the server
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
