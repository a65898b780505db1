"""Atomic writes: a killed run must never leave a half-written artifact.

Everything is written to a temporary file in the target's folder, flushed, fsynced and
then renamed over the target (rename is atomic on POSIX within one filesystem). The temporary
file's name carries its writer's pid, so sweeping the leftovers of a killed writer never takes
the file of a writer still running (two runs to the same output both finish; the last one
wins). The result gets the usual permissions (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file here


def alive(pid: int) -> bool:
    """Whether a process with this pid runs (a writer whose temporary files must be left alone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid at all
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def writer_pid(name: str, prefix: str) -> int | None:
    """The pid that follows `prefix` in a temporary name (`.<target>.<pid>.<random>.tmp`,
    `.tmp-<name>-<pid>`); None when there is none (a name from before pids were written)."""
    head = name[len(prefix):].split(".")[0] if name.startswith(prefix) else ""
    return int(head) if head.isdigit() else None


def sweep_stale_temps(target: Path) -> int:
    """Remove temporary files a killed writer of `target` left behind (SIGKILL skips cleanup); the
    files of writers still running (another process writing the same target) stay."""
    removed = 0
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        pid = writer_pid(stale.name, f".{target.name}.")
        if pid is not None and alive(pid):
            continue
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` on success.

    One writer per target is assumed (DVC and the pipeline run a stage once at a time), so
    temporary files of an earlier, killed writer are swept first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
