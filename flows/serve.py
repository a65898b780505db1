"""Serve the flows as deployments, so they can be triggered from the Prefect UI.

    make serve                     # starts a local Prefect server (SQLite, 127.0.0.1:4200) and serves
    python -m flows.serve --port 4200
    python -m flows.serve --no-server   # serve against the server PREFECT_API_URL points to

Deployments (all named `pixelscope`): pipeline, and one per stage of the stage table
(pixelscope/pipeline/stages.py): version-raw-data, ingest, preprocess, embed, profile,
validate, publish. Each takes `project` (the repository folder) and `overrides` (nested
params, e.g. {"paths": {"raw": "data/new_batch"}}), which are validated and written to
params.yaml so DVC records what ran. Trigger one from the UI
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


def deployments():
    """The pipeline, then one deployment per stage of the stage table."""
    from flows.pipeline import pipeline
    from flows.steps import FLOWS

    project = str(settings.PROJECT)
    return [f.to_deployment(name="pixelscope", parameters={"project": project})
            for f in (pipeline, *FLOWS.values())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--no-server", action="store_true", help="use the server PREFECT_API_URL points to")
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
        serve(*deployments())  # blocks until Ctrl-C / SIGTERM
    finally:
        if server is not None:  # serve stops first, then the server
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
