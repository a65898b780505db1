"""The monitor flow: a new data drop against the reference (pixelscope/monitor.py), as a
Prefect flow with the pipeline's retries and logs. `make serve` registers it as the
`monitor/pixelscope` deployment, scheduled by monitor.cron when that is set.

    python -m flows.monitor data/drops/2026-12-02
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task

from pixelscope.config import Params, load_params
from pixelscope.monitor import monitor_drop, parse_when
from tasks.steps import log_result, retry_options


@task(name="monitor-drop")
def monitor_task(params: Params, project: Path, drop: str | None, when: datetime | None) -> dict[str, Any]:
    return log_result(monitor_drop(params, project, drop, when=when))


@flow(name="monitor", log_prints=True)
def monitor(project: str = ".", drop: str | None = None, date: str | None = None,
            on_drift: str | None = None) -> dict[str, Any]:
    """Ingest, embed and profile a drop (default: monitor.drop), roll it into its window, test it
    against the reference and record it in the history; the run fails when it drifts (on_drift: fail)."""
    # on_drift is this run's choice: validated, not written to params.yaml
    params = load_params(Path(project) / "params.yaml", {"monitor": {"on_drift": on_drift}} if on_drift else None)
    when = parse_when(date)
    # a drifting drop is an answer, not a transient failure: the one retry rule does not retry DropDrifted
    return monitor_task.with_options(**retry_options(params))(params, Path(project).resolve(), drop, when)


if __name__ == "__main__":
    monitor(".", sys.argv[1] if len(sys.argv) > 1 else None)
