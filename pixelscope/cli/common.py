"""What every command shares: consoles, options, params loading, progress bars, user errors.

Errors a user can fix (PixelscopeError: missing path, empty folder, bad params) print one
clear message and exit non-zero without a traceback; anything else is a bug and keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pixelscope.config import Params, dotted_overrides, load_params
from pixelscope.errors import ConfigError, InputMissing, PixelscopeError

err = Console(stderr=True, soft_wrap=True)
out = Console()
if not out.is_terminal:  # piped or captured: wide enough that tables do not fold
    out = Console(width=160)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (defaults apply when absent)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a param, e.g. --set ingest.workers=2")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """PixelscopeError -> one line on stderr, exit 2 (config) or 1; other exceptions propagate."""
    try:
        yield
    except ConfigError as e:
        fail(str(e), 2)
    except PixelscopeError as e:
        fail(str(e), 1)


def load(path: Path, sets: list[str] | None, extra: dict[str, Any] | None = None) -> Params:
    """The params file with --set overrides and a command's own options (dotted key -> value)."""
    overrides = dotted_overrides(sets or [])
    for dotted, value in (extra or {}).items():
        if value is not None:  # a command's own option: already typed, nested as it is
            *parents, leaf = dotted.split(".")
            node = {leaf: str(value) if isinstance(value, Path) else value}
            for part in reversed(parents):
                node = {part: node}
            _merge(overrides, node)
    return load_params(path, overrides)


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) else v
    return a


class LazyProgress:
    """A progress bar that appears on the first update (steps that never report show none).

    auto_refresh=False: no refresh thread, so worker processes can still be forked safely."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.bar: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                                transient=False, auto_refresh=False)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total, rate="")
            self.t0 = time.perf_counter()
        if done == total or done % 16 == 0:
            rate = done / max(1e-9, time.perf_counter() - self.t0)
            self.bar.update(self.task, completed=done, total=total, rate=f"{rate:,.0f} img/s", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def progress(label: str, quiet: bool) -> Iterator[LazyProgress]:
    bar = LazyProgress(label, quiet)
    try:
        yield bar
    finally:
        bar.close()


def existing(path: Path) -> Path:
    if not path.exists():
        raise InputMissing(f"file not found: {path}")
    return path

