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


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """End this process with `sig` when the process that started it dies, so `kill -9` of a step
    leaves no worker running. Every worker pool's initializer calls it. Two ways, for the two ways a
    pool starts: the kernel's parent-death signal (Linux; the parent is the step when forked), and
    a thread that waits on multiprocessing's sentinel for the step (with a fork server, the parent is
    the fork server, which itself stays up while any of its workers does)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before the request took
        os.kill(os.getpid(), sig)
    step = multiprocessing.parent_process()
    sentinel = getattr(step, "sentinel", None) if step is not None else None
    if sentinel is not None:
        from multiprocessing.connection import wait

        def watch() -> None:
            wait([sentinel])
            os.kill(os.getpid(), sig)

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
