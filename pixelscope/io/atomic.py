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
import shutil
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


SET_KEY = "pixelscope.set"  # Parquet schema metadata / JSON key: the run a file of a set was written by


def content_set_id(tables: list, texts: list[bytes]) -> str:
    """A set id from the set's own content (Arrow tables and bytes), so the same inputs give the
    same files byte for byte (DVC, and comparing runs, need that) while two different runs differ."""
    import hashlib

    import pyarrow as pa

    h = hashlib.sha256()
    for table in tables:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    for text in texts:
        h.update(text)
    return h.hexdigest()[:16]


def set_id_of(path: Path) -> str | None:
    """The set id a file was written with (Parquet metadata, or a JSON object's key); None if none."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            value = (pq.read_schema(path).metadata or {}).get(SET_KEY.encode())
            return value.decode() if value else None
        import json

        data = json.loads(path.read_text())
        return data.get(SET_KEY) if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def atomic_set(targets: list[Path]) -> Iterator[list[Path]]:
    """Temporary paths for files that belong together (a step's outputs in several places): none is
    renamed into place until every one is written, so a failure leaves the previous set whole. The
    renames themselves follow one another: writers stamp each file with one set id (SET_KEY), and
    readers that need the set whole compare the ids (a kill between two renames shows as two ids)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(t)) for t in targets]


@contextlib.contextmanager
def exclusive(target: str | Path, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold a lock on `target` while it is read, changed and written back, so writers in other
    processes (a service's forked workers closing their windows at once) never lose each other's
    rows. The lock file lives in this user's temporary folder, keyed by the target's absolute path,
    so the project stays clean; it covers the processes of one machine (filelock, flock underneath)."""
    import hashlib

    from filelock import FileLock, Timeout

    key = hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / f"pixelscope-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    lock = FileLock(str(folder / f"{key}.lock"), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise TimeoutError(f"{target}: another process held it for more than {timeout_s:.0f} s") from None
    try:
        yield
    finally:
        lock.release()


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


class Staged:
    """A folder written as a whole: into <root>/.tmp-<name>-<pid>, then put in place of <root>/<name>
    by renames at the end (curate's set, publish's bundle), so a killed run leaves the previous
    folder whole. A staging folder of a run still going is left alone."""

    def __init__(self, root: Path, name: str):
        self.final = root / name
        self.tmp = root / f".tmp-{name}-{os.getpid()}"

    def __enter__(self) -> Path:
        for prefix in (f".tmp-{self.final.name}-", f".old-{self.final.name}-"):  # left by a killed run
            for stale in self.final.parent.glob(f"{prefix}*"):
                pid = writer_pid(stale.name, prefix)
                if pid is not None and alive(pid):  # another run's folder, still being written
                    continue
                if prefix.startswith(".old") and not self.final.exists():
                    stale.rename(self.final)  # killed between its two renames: the previous folder comes back
                else:
                    shutil.rmtree(stale, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, kind, *exc) -> None:
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.final.with_name(f".old-{self.final.name}-{os.getpid()}")
        if self.final.exists():
            self.final.rename(old)
        self.tmp.rename(self.final)
        shutil.rmtree(old, ignore_errors=True)
