"""The step contract: every step is `step(params, project, *, progress=None) -> StepResult`.

A step resolves its paths with `params.paths.under(project)`, raises a StepError (with what
to fix) for input it cannot use, writes its outputs atomically, writes its metrics to
`paths.metrics/<stage>.json` (`dvc metrics show`), and returns what it did. The CLI prints
`summary` and `notes`, the flows log them, `--json` prints `to_dict()`.

Every step is `<package>/step.py`, beside the code it runs (track/, ingest/, embed/ (preprocess
and embed), profile/, issues/, validate/, curate/, publish/); pipeline/stages.py lists them once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixelscope.config import Params
from pixelscope.io.atomic import write_bytes_atomic
from pixelscope.io.values import plain

ProgressFn = Callable[[int, int], None]


@dataclass(kw_only=True)
class StepResult:
    """What a step did (built with keywords only: eight fields are too many to keep in order).
    counts add up (e.g. files_seen = ok + errors); metrics is what it wrote
    to paths.metrics/<stage>.json (empty when the stage keeps no metrics)."""

    stage: str
    summary: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


def write_metrics(params: Params, project: str | Path, result: StepResult) -> StepResult:
    """Write the result's metrics as the stage's DVC metrics file (atomic); returns the result."""
    if result.metrics:
        path = params.paths.under(project).metrics_file(result.stage)
        write_bytes_atomic(path, json.dumps(result.metrics, indent=1, sort_keys=True).encode())
        result.outputs.setdefault("metrics", str(path))
    return result


def by_reason(prefix: str, counts: dict[str, int]) -> dict[str, int]:
    """Per-reason error counts as flat metric keys (errors_decode_error: 2, ...)."""
    return {f"{prefix}{k}": v for k, v in counts.items()}


def reason_notes(counts: dict[str, int]) -> list[str]:
    return [f"error {reason}: {n}" for reason, n in counts.items()]
