"""Worker pools: how many workers, and how to start them safely beside other threads."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
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
