"""Worker pools: how many workers, and how to start them safely beside other threads."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import threading


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int, items: int | None = None) -> int:
    """0 means one worker per CPU core this process may use; more than the cores (or, when known,
    the items to process) is capped: `-w 32` on 5 files starts 2 processes on 2 cores, not 32."""
    n = min(workers, cpu_cores()) if workers > 0 else cpu_cores()
    return max(1, min(n, items) if items is not None else n)


PR_SET_PDEATHSIG = 1


def end_with_this_process(sig: int = signal.SIGTERM) -> None:
    """For `preexec_fn` of a child this process waits on in its main thread (the dashboard's
    Streamlit): the kernel sends `sig` to the child when this process dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def die_with_parent() -> None:
    """Pool initializer: this worker exits when the process that asked for it dies, even by SIGKILL.

    A killed step otherwise leaves its workers (and, under a fork server, the server and the
    resource tracker) running for minutes. The worker's real parent is the fork server under
    forkserver, so the watch is on multiprocessing's `parent_process()` (the step), through a
    pidfd: no polling, and a pid reused later cannot fool it. A step already gone at start ends
    the worker at once; a kernel without pidfd (< 5.3) keeps the old behaviour."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):  # pragma: no cover - old kernel or not Linux
        return

    def watch() -> None:
        select.select([fd], [], [])  # a pidfd turns readable when that process exits
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def pool_start_method() -> str:
    """fork when this process has one thread (fast; works from unguarded scripts and notebooks);
    forkserver when other threads run (Prefect's engine, say), whose held locks a forked child
    would inherit and could deadlock on."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def pool_context(preload: str) -> multiprocessing.context.BaseContext:
    """A multiprocessing context by pool_start_method(); a fork server preloads `preload`
    (the module with the workers' heavy imports), so each worker forks ready."""
    method = pool_start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([preload])
    return ctx
