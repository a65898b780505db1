"""`pixelscope dashboard [BUNDLE]`: the Streamlit app over a publish bundle, on 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from pixelscope.cli.common import out, user_errors
from pixelscope.errors import InputMissing
from pixelscope.io.parallel import end_with_this_process


def app_file(name: str = "app.py") -> Path:
    """A file of the Streamlit app: the `dashboards` package installed beside pixelscope (from a wheel,
    or this source tree in an editable install); found by import, not by a path next to the source."""
    spec = importlib.util.find_spec("dashboards")
    app = Path(spec.origin).parent / name if spec is not None and spec.origin else None
    if app is None or not app.exists() or not (app.parent / "views" / "overview.py").exists():
        raise InputMissing("the dashboard app is not installed: pip install 'pixelscope[dashboard]'")
    return app


def streamlit_command(port: int) -> list[str]:
    """Private and offline: loopback only, headless, no usage statistics; served through
    dashboards/server.py, which adds a Content-Security-Policy to every response."""
    return [sys.executable, "-m", "streamlit", "run", str(app_file("server.py")), "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"]


def fetch_bundle(rev: str, project: Path, folder: Path, dest: Path) -> Path:
    """The bundle folder as committed at a git rev, read through DVC (no checkout)."""
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(str(project), rev=rev)
        fs.get(folder.as_posix(), str(dest), recursive=True)
    except Exception as e:  # noqa: BLE001 - unknown rev, not in the cache or remote: say which
        raise InputMissing(f"{rev!r} is neither a bundle folder nor a git rev whose {folder} DVC can read "
                           f"({type(e).__name__}: {e})") from None
    return dest


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        bundle: Annotated[Optional[str], typer.Argument(help="bundle folder, or a git rev (read through DVC)")] = None,
        port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8501,
        project: Annotated[Path, typer.Option(help="project folder: its decisions file, and a git rev's bundle")] = Path("."),
        read_only: Annotated[bool, typer.Option("--read-only", help="hide every action (nothing is written)")] = False,
        params: Annotated[Path, typer.Option("--params", "-p", help="the project's params file")] = Path("params.yaml"),
    ) -> None:
        """Review a dataset version in the browser: http://127.0.0.1:PORT (Ctrl-C stops it). On this
        loopback address the pages can record review decisions; `--read-only` hides every action."""
        from pixelscope.config import Params

        with user_errors():
            folder = Path(bundle) if bundle else project / Params().paths.publish
            tmp = None
            if not folder.is_dir():
                if bundle is None:
                    raise InputMissing(f"no bundle at {folder}: run `make demo` (or `pixelscope publish`) first")
                tmp = tempfile.TemporaryDirectory(prefix="pixelscope-bundle-")
                folder = fetch_bundle(bundle, project, Params().paths.publish, Path(tmp.name) / "bundle")
            from pixelscope.publish.bundle import Bundle

            Bundle.open(folder)
            out.print(f"dashboard over {folder}: http://127.0.0.1:{port}", soft_wrap=True)
            sys.stdout.flush()  # before streamlit writes: the address comes first, also through a pipe
            env = {**os.environ, "PIXELSCOPE_BUNDLE": str(folder.resolve()), "PIXELSCOPE_PROJECT": str(project.resolve()),
                   "PIXELSCOPE_PARAMS": str(params), "PIXELSCOPE_READ_ONLY": "1" if read_only or tmp is not None else ""}
            # Streamlit stops with this command: on Ctrl-C, on SIGTERM (which used to leave it serving),
            # and when this process is killed outright (the kernel's parent-death signal)
            child = subprocess.Popen(streamlit_command(port), env=env, preexec_fn=end_with_this_process)
            previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
            # Ctrl-C stops it even when it was started with SIGINT ignored (a parent inside C's system(),
            # a background job of a script): such a start left it, and Streamlit, serving forever
            interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                child.wait()
            except KeyboardInterrupt:
                child.terminate()
                child.wait(timeout=30)
            finally:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGINT, interrupt)
                if tmp is not None:
                    tmp.cleanup()
