"""Profiling throughput and memory: pixelscope vs whylogs vs cleanvision vs fastdup, same images, same run.

    python benchmarks/bench_profile.py --sizes 5000 50000

Builds N JPEGs (320x240 to 1280x960, from the real photos scikit-image ships), runs each
tool as its own process (peers in their own venvs, created on first use: whylogs `log_image`,
cleanvision `find_issues`, fastdup's C++ stats-only mode), samples the whole process tree's
RSS and PSS, and prints images/s and peak RSS / PSS per tool. Peers are run at --peer-sizes
only (whylogs takes ~15 minutes for 50,000 images). `--cold` drops the page cache before each
run, so every file comes from disk. `--rounds R` runs the tools R times, interleaved
(pixelscope, peer, peer, ..., pixelscope, ...), so a VM whose speed drifts over minutes slows
every tool alike; the summary gives each round's same-run ratio and their median.
Results are appended to benchmarks/results/profile.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
PEERS = {
    "whylogs": ["whylogs[image,viz]==1.6.4", "numpy<2", "pillow", "pandas<3"],
    "cleanvision": ["cleanvision==0.3.7"],
    "fastdup": ["fastdup==2.54"],  # its C++ stats-only mode (peers/run_fastdup.py)
}


def peer_python(name: str, override: str | None = None, packages: list[str] | None = None) -> Path:
    """The python of the peer's own venv (benchmarks/.work/venv-<name>), made on first use."""
    if override:
        return Path(override)
    packages = packages or PEERS[name]
    venv = WORK / f"venv-{name}"
    py = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"creating {venv} ({' '.join(packages)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *packages], check=True)
        (venv / ".installed").touch()
    return py


def image_set(n: int) -> Path:
    from pixelscope.demo import build_benchmark_set

    root = WORK / f"images-{n}"
    done = WORK / f"images-{n}.complete"
    if not done.exists():
        print(f"building {n:,} benchmark JPEGs in {root} ...", flush=True)
        build_benchmark_set(root, n, seed=n, workers=os.cpu_count() or 2)
        done.touch()
    return root


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run cmd, sample the RSS and PSS of its whole process tree, return its JSON line + the peaks.

    RSS counts pages shared between processes (forked workers, shared libraries) once per
    process; PSS splits each shared page between the processes that map it, so the summed PSS
    is what the tool really occupies. PSS is read from smaps (slower): every 4th sample."""
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = peak_pss = 0
    cpu: dict[int, float] = {}  # pid -> CPU seconds last seen (the tree's CPU: sampled, so a process's last 50 ms is missed)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        k = 0
        while not stop.is_set():
            try:
                procs = [proc] + proc.children(recursive=True)
                rss = pss = 0
                for p in procs:
                    try:
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                        rss += p.memory_info().rss
                        if k % 4 == 0:
                            pss += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                peak = max(peak, rss)
                peak_pss = max(peak_pss, pss)
            except psutil.Error:
                pass
            k += 1
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(peak_rss_mb=round(peak / 2**20, 1), peak_pss_mb=round(peak_pss / 2**20, 1), wall_seconds=round(wall, 2),
                  cpu_seconds=round(sum(cpu.values()), 2),
                  images_per_s=round(result["images"] / result["seconds"], 1))
    return result


def drop_page_cache() -> None:
    """Write back and drop the kernel's page cache, so the next run reads every file from disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        sys.exit(f"--cold needs root to drop the page cache ({e})")


def code_version() -> str:
    """The pixelscope commit measured (+ "-dirty" with uncommitted changes), for the results file."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pixelscope"], cwd=HERE.parent,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def ratio_lines(results: list[dict]) -> list[str]:
    """pixelscope / peer per round (same run, back to back), and the median over rounds."""
    rounds: dict[tuple[int, int], dict[str, float]] = {}
    for r in results:
        rounds.setdefault((r["n"], r["round"]), {})[r["tool"]] = r["images_per_s"]
    lines = []
    for n in sorted({n for n, _ in rounds}):
        for peer in ("whylogs", "cleanvision", "fastdup"):
            ratios = [tools["pixelscope"] / tools[peer] for (m, _), tools in sorted(rounds.items())
                      if m == n and peer in tools and "pixelscope" in tools]
            if ratios:
                each = ", ".join(f"{x:.2f}" for x in ratios)
                lines.append(f"N={n:,}: pixelscope / {peer} = {statistics.median(ratios):.2f}x"
                             + (f" (median of {len(ratios)} rounds: {each})" if len(ratios) > 1 else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000])
    ap.add_argument("--peer-sizes", type=int, nargs="*", default=[5000], help="sizes at which peers run too")
    ap.add_argument("--peers", nargs="*", default=list(PEERS))
    ap.add_argument("--whylogs-python")
    ap.add_argument("--cleanvision-python")
    ap.add_argument("--fastdup-python")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every tool this many times, interleaved; ratios are per round, then their median")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before each run (root only): every file is read from disk")
    args = ap.parse_args()

    machine = (f"{platform.node()} {platform.machine()}, {psutil.cpu_count()} cores, "
               f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    commit = code_version()
    results = []
    for n in args.sizes:
        root = image_set(n)
        work = WORK / f"out-{n}"
        work.mkdir(parents=True, exist_ok=True)
        runs = [("pixelscope", [sys.executable, str(HERE / "peers" / "run_pixelscope.py"), str(root), str(work),
                                str(args.workers)])]
        if n in args.peer_sizes:
            for peer in args.peers:
                py = peer_python(peer, getattr(args, f"{peer}_python"))
                runs.append((peer, [str(py), str(HERE / "peers" / f"run_{peer}.py"), str(root)]))
        for rnd, (name, cmd) in ((rnd, run) for rnd in range(1, args.rounds + 1) for run in runs):
            print(f"N={n:,}: running {name}{' (cold cache)' if args.cold else ''}"
                  f"{f', round {rnd} of {args.rounds}' if args.rounds > 1 else ''} ...", flush=True)
            if args.cold:
                drop_page_cache()
            r = measure(cmd)
            r.update(n=n, machine=machine, date=datetime.now(UTC).isoformat(timespec="seconds"), cache="cold" if args.cold
                     else "warm", round=rnd, commit=commit)
            results.append(r)
            print(f"  {name:12s} {r['images_per_s']:8.1f} images/s   peak RSS {r['peak_rss_mb']:7.1f} MB   "
                  f"peak PSS {r['peak_pss_mb']:7.1f} MB   "
                  f"({r['seconds']:.1f}s)" + (f"   profile {r['profile_bytes'] / 1024:.0f} KiB" if "profile_bytes" in r else ""),
                  flush=True)
    out = HERE / "results" / "profile.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    print(f"\n{'N':>7} {'round':>5} {'tool':12s} {'images/s':>9} {'peak RSS MB':>12} {'peak PSS MB':>12}")
    for r in results:
        print(f"{r['n']:>7,} {r['round']:>5} {r['tool']:12s} {r['images_per_s']:>9.1f} {r['peak_rss_mb']:>12.1f} "
              f"{r['peak_pss_mb']:>12.1f}")
    for line in ratio_lines(results):
        print(line)
    print(f"results appended to {out}")


if __name__ == "__main__":
    main()
