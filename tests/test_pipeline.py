"""The orchestrated, versioned pipeline with real DVC, real Prefect and a real Dask cluster.

Each test works in a temporary git + DVC repository holding a copy of the project's
dvc.yaml, params.yaml and pixelscope/ source (the code the stages depend on).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, free_port, ingest_to, profile_to, wait_healthy
from pixelscope.config import load_params
from pixelscope.pipeline.stages import DVC_STAGES
from pixelscope.profile import Profile

pytestmark = pytest.mark.slow
BIN = str(Path(sys.executable).parent)


STAGES = [s.name for s in DVC_STAGES]  # ingest, objects, preprocess, embed, profile, issues, validate, curate, publish


def sh(args: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **kw.pop("env", {})}
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


def set_param(project: Path, dotted: str, value) -> None:
    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    node = data
    *parents, leaf = dotted.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_project(root: Path, per_class: int = 8) -> Path:
    from pixelscope.demo import build_demo

    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "pixelscope", root / "pixelscope", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "expectations", root / "expectations")
    shutil.copytree(REPO / "curation", root / "curation")  # the (empty) review decisions: a dep of curate
    sh(["git", "init", "-q"], root)
    sh(["git", "config", "user.email", "t@example.com"], root)
    sh(["git", "config", "user.name", "test"], root)
    dvc("init", "-q", cwd=root)
    set_param(root, "pipeline.shard_size", 10)
    set_param(root, "ingest.workers", 2)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "project"], root)
    build_demo(root / "data" / "raw", None, per_class=per_class, workers=1)  # untracked: DVC will track it
    return root


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def piped(tmp_path_factory, prefect_server):
    """A project after one pipeline run through Prefect."""
    from flows.pipeline import pipeline

    project = make_project(tmp_path_factory.mktemp("pipe") / "project")
    result = pipeline(str(project))
    return project, result


def test_prefect_run_leaves_dvc_up_to_date(piped):
    project, result = piped
    assert result["ran"] == STAGES
    assert result["version"]["details"]["md5"] and result["version"]["details"]["files"] == 50
    assert result["ingest"]["counts"]["files_seen"] == 50 and result["ingest"]["counts"]["ok"] == 48
    assert "up to date" in dvc("status", cwd=project).stdout
    out = dvc("repro", cwd=project).stdout
    assert "Running stage" not in out, out
    assert all(f"Stage '{s}' didn't change" in out for s in STAGES), out


def test_second_prefect_run_does_no_work(piped, prefect_server):
    from flows.pipeline import pipeline

    project, _ = piped
    before = (project / "data/interim/manifest.parquet").stat().st_mtime_ns
    again = pipeline(str(project))
    assert again["ran"] == [] and again["skipped"] == STAGES
    assert (project / "data/interim/manifest.parquet").stat().st_mtime_ns == before


def test_prefect_and_cli_give_the_same_manifest(piped, tmp_path):
    project, _ = piped
    r = sh(["pixelscope", "ingest", "-q", "--out", str(tmp_path / "cli.parquet"), "--set", f"paths.metrics={tmp_path}"],
           project)
    assert r.returncode == 0
    flow_t, cli_t = pq.read_table(project / "data/interim/manifest.parquet"), pq.read_table(tmp_path / "cli.parquet")
    assert flow_t.equals(cli_t)
    assert sha(project / "data/interim/manifest.parquet") == sha(tmp_path / "cli.parquet")


def test_issues_stage_through_the_cli_gives_the_prefect_run_s_files(piped, tmp_path):
    """What `dvc repro` runs (`pixelscope issues`) writes the same tables as the Prefect run did."""
    project, result = piped
    assert result["issues"]["counts"]["unreadable"] == 2
    sets = [f"paths.issues={tmp_path}/i.parquet", f"paths.issue_pairs={tmp_path}/p.parquet",
            f"paths.issues_summary={tmp_path}/i.json", f"paths.neighbours={tmp_path}/n.parquet",
            f"paths.metrics={tmp_path}/metrics"]
    r = sh(["pixelscope", "issues", "-q", *[x for s in sets for x in ("--set", s)]], project)
    assert r.returncode == 0
    for ours, theirs in (("i.parquet", "issues.parquet"), ("p.parquet", "issues_pairs.parquet")):
        a, b = pq.read_table(tmp_path / ours), pq.read_table(project / "data/processed" / theirs)
        assert a.equals(b), [c for c in a.column_names if not a.column(c).equals(b.column(c))]
    assert json.loads((tmp_path / "i.json").read_text()) == json.loads((project / "data/processed/issues.json").read_text())


def test_curate_stage_through_the_cli_gives_the_prefect_run_s_set(piped, tmp_path):
    """`pixelscope curate` (what `dvc repro` runs) writes the same ledger and the same export bytes
    as the Prefect run did; --dry-run writes nothing."""
    project, _ = piped
    sets = [f"paths.curated={tmp_path}/curated", f"paths.metrics={tmp_path}/metrics"]
    r = sh(["pixelscope", "curate", "-q", *[x for s in sets for x in ("--set", s)]], project)
    assert r.returncode == 0, r.stderr
    ours, theirs = tmp_path / "curated", project / "data/curated"
    assert pq.read_table(ours / "curation.parquet").equals(pq.read_table(theirs / "curation.parquet"))
    for fmt in ("torchvision", "imagefolder", "webdataset", "parquet"):
        assert (ours / fmt / "SHA256SUMS").read_text() == (theirs / fmt / "SHA256SUMS").read_text(), fmt
    r = sh(["pixelscope", "curate", "--dry-run", "--json", "--set", f"paths.curated={tmp_path}/dry"], project)
    assert r.returncode == 0 and not (tmp_path / "dry").exists()
    dry, written = json.loads(r.stdout)["details"]["counts"], json.loads((theirs / "curate.json").read_text())
    assert dry == {k: written[k] for k in dry}


def test_publish_bundle_and_metrics(piped):
    project, result = piped
    import json

    bundle = json.loads((project / "reports/publish/summary.json").read_text())
    assert bundle["versions"]["raw"]["md5"] == result["version"]["details"]["md5"]
    assert bundle["versions"]["raw"]["git_commit"]
    assert bundle["manifest"]["errors_by_reason"] == {"empty_file": 1, "truncated": 1}
    assert set(bundle["timings"]) == {"ingest", "objects", "preprocess", "embed", "profile", "issues", "curate"}
    cur = bundle["curated"]  # the demo's 48 readable images, less what the default recipe leaves out
    assert cur["files"] == 50 and cur["unreadable"] == 2 and cur["included"] + cur["excluded"] == 48
    assert cur["included"] == sum(cur["splits"].values()) > 0
    assert bundle["issues"]["finders"]["unreadable"]["flagged"] == 2  # the demo's truncated + empty files
    assert bundle["embedding"]["model"] == "efficientnet_lite0" and bundle["embedding"]["all"]["images"] == 48
    assert pq.read_table(project / "reports/publish/projection.parquet").num_rows == 48
    prof = Profile.load(project / "data/processed/profile.json")
    assert prof.embedding is not None and prof.embedding.dim == 1280 and len(prof.embedding.labels) == 6
    assert (project / "reports/publish/profile.json").read_bytes() == (project / "data/processed/profile.json").read_bytes()
    shown = dvc("metrics", "show", "--json", cwd=project).stdout
    assert '"files_seen": 50' in shown.replace("\n", " ").replace("  ", " ") or '"files_seen":50' in shown


def test_param_change_reruns_only_dependent_stages(piped, prefect_server):
    from flows.pipeline import pipeline

    project, _ = piped
    set_param(project, "profile.kll_k", 150)
    status = dvc("status", cwd=project).stdout
    assert "profile:" in status and "ingest:" not in status, status
    diff = dvc("params", "diff", cwd=project).stdout
    assert "profile.kll_k" in diff and "150" in diff
    out = dvc("repro", cwd=project).stdout
    assert all(f"Running stage '{s}'" in out for s in ("profile", "validate", "publish"))
    assert all(f"Running stage '{s}'" not in out for s in ("ingest", "preprocess", "embed", "curate"))
    assert Profile.load(project / "data/processed/profile.json").cfg.kll_k == 150
    # the same through Prefect, with the override given as a flow parameter
    r = pipeline(str(project), overrides={"profile": {"kll_k": 120}}, version_data=False)
    assert r["ran"] == ["profile", "validate", "publish"]
    assert r["skipped"] == ["ingest", "objects", "preprocess", "embed", "issues", "curate"]  # the same validation results
    assert load_params(project / "params.yaml").profile.kll_k == 120  # recorded where DVC sees it
    assert "up to date" in dvc("status", cwd=project).stdout


def test_a_recipe_change_reruns_only_curate_and_publish(piped):
    """Editing curate: in params.yaml reruns curate (and publish, which carries its counts); nothing before."""
    project, _ = piped
    assert "up to date" in dvc("status", cwd=project).stdout
    set_param(project, "curate.balance.max_per_class", 3)
    out = dvc("repro", cwd=project).stdout
    ran = [s for s in STAGES if f"Running stage '{s}'" in out]
    assert ran == ["curate", "publish"], out
    counts = json.loads((project / "data/curated/curate.json").read_text())["per_split_label"]
    per_label: dict[str, int] = {}
    for per in counts.values():
        for label, n in per.items():
            per_label[label] = per_label.get(label, 0) + n
    assert per_label and max(per_label.values()) == 3  # the demo has more than 3 images of every kept class
    assert "up to date" in dvc("status", cwd=project).stdout


def test_a_decision_makes_curate_stale_and_dvc_repro_gives_what_apply_gave(piped):
    """After a review decision, `dvc status` shows curate stale (the decisions file is its dep); the
    dashboard's Apply (curate + publish in a process of its own) and `dvc repro` give the same ledger
    and exports; undoing it and repro-ing gives the earlier set back, byte for byte."""
    project, _ = piped
    curated = project / "data" / "curated"
    files = ["curation.parquet", "torchvision/SHA256SUMS", "webdataset/SHA256SUMS", "parquet/SHA256SUMS"]

    def hashes() -> dict[str, str]:
        return {f: sha(curated / f) for f in files if (curated / f).exists()}

    before = hashes()
    led = pq.read_table(curated / "curation.parquet").to_pandas()
    target = led[led["included"]].iloc[0]["path"]
    r = sh([sys.executable, "-m", "pixelscope", "decide", "exclude", "--path", target, "--reason", "review"], project)
    assert "recorded 1 exclude decision" in r.stdout
    status = dvc("status", cwd=project).stdout
    assert "curate:" in status and "curation/decisions.jsonl" in status, status
    sh([sys.executable, "-m", "pixelscope.curate.apply", "--project", str(project)], project)
    applied = hashes()
    assert applied != before
    ledger = pq.read_table(curated / "curation.parquet").to_pandas().set_index("path")
    assert not ledger.at[target, "included"] and ledger.at[target, "first_reason"] == "excluded in review"
    out = dvc("repro", cwd=project).stdout
    assert "Running stage 'curate'" in out and "Running stage 'embed'" not in out
    assert hashes() == applied  # dvc repro replays the file to the set Apply made
    batch = json.loads((project / "curation" / "decisions.jsonl").read_text().splitlines()[-1])["batch"]
    sh([sys.executable, "-m", "pixelscope", "decide", "undo", batch], project)
    dvc("repro", cwd=project)
    assert hashes() == before
    (project / "curation" / "decisions.jsonl").write_text("")  # leave the shared project as it was
    dvc("repro", cwd=project)


def test_a_label_fixes_csv_becomes_a_dvc_dep_once_set(piped):
    """Setting curate.label_fixes adds the CSV to the curate stage's deps (after regenerating
    dvc.yaml, which `--check` demands): editing the CSV then reruns curate."""
    project, _ = piped
    led = pq.read_table(project / "data/curated/curation.parquet").to_pandas()
    first = led[led["included"]].iloc[0]["path"]
    fixes = project / "fixes.csv"
    fixes.write_text(f"path,new_label\n{first},relabeled\n")
    set_param(project, "curate.label_fixes", "fixes.csv")
    stale = sh([sys.executable, "-m", "pixelscope.pipeline.stages", "--check"], project, check=False)
    assert stale.returncode == 1 and "--write" in stale.stderr
    sh([sys.executable, "-m", "pixelscope.pipeline.stages", "--write"], project)
    assert "${curate.label_fixes}" in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["curate"]["deps"]
    dvc("repro", cwd=project)

    def label() -> str:
        t = pq.read_table(project / "data/curated/curation.parquet").to_pandas().set_index("path")
        return t.at[first, "label"]

    assert label() == "relabeled"
    fixes.write_text(f"path,new_label\n{first},other\n")
    assert "curate:" in dvc("status", cwd=project).stdout
    out = dvc("repro", cwd=project).stdout
    assert "Running stage 'curate'" in out and "Running stage 'embed'" not in out and label() == "other"
    set_param(project, "curate.label_fixes", None)  # leave the shared project as it was
    sh([sys.executable, "-m", "pixelscope.pipeline.stages", "--write"], project)
    dvc("repro", cwd=project)
    assert "up to date" in dvc("status", cwd=project).stdout


def test_editing_drift_code_reruns_only_validate_and_publish(piped):
    """Code deps are per stage: an edit in pixelscope/validate/ leaves ingest .. profile alone."""
    project, _ = piped
    assert "up to date" in dvc("status", cwd=project).stdout
    drift = project / "pixelscope" / "validate" / "drift.py"
    drift.write_text(drift.read_text() + "\n# an edit\n")
    status = dvc("status", cwd=project).stdout
    assert "validate:" in status and not any(f"{s}:" in status for s in ("ingest", "preprocess", "embed", "profile"))
    out = dvc("repro", cwd=project).stdout
    ran = [s for s in STAGES if f"Running stage '{s}'" in out]
    assert ran == ["validate", "publish"], out
    assert "up to date" in dvc("status", cwd=project).stdout


def test_push_wipe_pull_restores_bit_for_bit(piped):
    project, _ = piped
    dvc("push", cwd=project)
    outs = ["data/raw", "data/interim/manifest.parquet", "data/processed/embeddings", "data/processed/profile.json",
            "reports/publish"]

    def hashes() -> dict[str, str]:
        out = {}
        for o in outs:
            p = project / o
            out.update({f"{o}/{k}": v for k, v in tree_hashes(p).items()} if p.is_dir() else {o: sha(p)})
        return out

    before = hashes()
    assert sum(k.startswith("data/raw/") for k in before) == 50
    shutil.rmtree(project / ".dvc" / "cache")
    for o in outs:
        p = project / o
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    dvc("pull", cwd=project)
    assert hashes() == before
    assert "up to date" in dvc("status", cwd=project).stdout


def run_on_dask(project: Path, tmp_path: Path, address: str | None = None, during=None) -> dict:
    """Ingest + profile of the piped project on Dask (a LocalCluster, or the scheduler at
    `address`), into tmp_path; `during(…)` runs in a thread while the flow does."""
    import threading

    from prefect import flow

    from flows.common import task_runner
    from flows.steps import run_ingest, run_profile

    params = load_params(project / "params.yaml").model_copy(deep=True)
    params.pipeline.runner = "dask"
    params.pipeline.dask_address = address
    params.paths.manifest = tmp_path / "dask.parquet"
    params.paths.profile = tmp_path / "dask.json"
    params.paths.metrics = tmp_path / "metrics"

    @flow(task_runner=task_runner(params))
    def on_dask():
        return run_ingest(params, project), run_profile(params, project)

    side = threading.Thread(target=during, daemon=True) if during else None
    if side:
        side.start()
    ingest_summary, _ = on_dask()
    if side:
        side.join(timeout=60)
    return ingest_summary


def test_dask_runner_matches_local(piped, prefect_server, tmp_path, monkeypatch):
    """Ingest + profile on a 2-worker Dask LocalCluster equal the local run (within sketch error)."""
    project, _ = piped
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    ingest_summary = run_on_dask(project, tmp_path)
    assert ingest_summary["counts"]["files_seen"] == 50
    assert_matches_local(project, tmp_path)


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on loopback, as on a real cluster:
    yields (address, worker processes)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    dask = str(Path(BIN) / "dask")
    log = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    workers = [subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-dashboard", "--name", f"w{k}"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True) for k in range(2)]
    try:
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
        yield f"tcp://127.0.0.1:{port}", workers
    finally:
        for p in [*workers, scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*workers, scheduler]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()


def test_dask_runner_on_a_separate_scheduler_and_workers_matches_local(piped, prefect_server, dask_cluster, tmp_path):
    """pipeline.dask_address pointed at a scheduler with two worker processes (started by the
    `dask` command line, loopback only): the same manifest as the local runner, the same
    profile within sketch error."""
    project, _ = piped
    address, _ = dask_cluster
    assert run_on_dask(project, tmp_path, address)["counts"]["files_seen"] == 50
    assert_matches_local(project, tmp_path)


def test_a_dask_worker_killed_mid_run_loses_nothing(piped, prefect_server, dask_cluster, tmp_path):
    """One of the two worker processes is killed while the ingest shards run: its shards are
    recomputed on the other worker and the outputs equal the uninterrupted local run."""
    from distributed import Client

    project, _ = piped
    address, workers = dask_cluster
    victim = workers[0]
    killed = []

    def kill_when_busy():  # as soon as the scheduler has given the victim a task, kill it (and its nanny)
        with Client(address, timeout=30) as c:
            addr = next(a for a, w in c.scheduler_info()["workers"].items() if w.get("name") == "w0")
            deadline = time.time() + 120
            busy = False
            while time.time() < deadline and not busy:
                busy = bool(c.processing().get(addr))
                time.sleep(0 if busy else 0.02)
            os.killpg(victim.pid, signal.SIGKILL)
            killed.append(busy)

    assert run_on_dask(project, tmp_path, address, during=kill_when_busy)["counts"]["files_seen"] == 50
    assert killed == [True] and victim.poll() is not None  # killed while it held a task
    assert_matches_local(project, tmp_path)


def assert_matches_local(project: Path, tmp_path: Path) -> None:
    """The Dask run's manifest equals the local one; its profile matches within sketch error."""
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(project / "data/interim/manifest.parquet"))
    local = Profile.load(project / "data/processed/profile.json")
    dask = Profile.load(tmp_path / "dask.json")
    assert (dask.files_seen, dask.ok, dict(dask.errors_by_reason)) == (local.files_seen, local.ok, dict(local.errors_by_reason))
    assert dask.segment_rows == local.segment_rows
    for col in ("sharpness", "brightness_mean", "bytes", "colorfulness"):
        d, lo_ = dask.sketch(col), local.sketch(col)
        assert (d.count, d.min, d.max) == (lo_.count, lo_.min, lo_.max)
        assert d.mean == pytest.approx(lo_.mean, rel=1e-9)
        manifest = pq.read_table(project / "data/interim/manifest.parquet")
        ok = manifest.filter(pa.compute.equal(manifest.column("status"), "ok"))  # what the profile sketches
        exact = np.sort(ok.column(col).drop_null().to_numpy().astype(np.float32))
        for q in (0.1, 0.5, 0.9):
            est = d.quantiles([q])[0]
            lo = np.searchsorted(exact, np.float32(est), "left") / len(exact)
            hi = np.searchsorted(exact, np.float32(est), "right") / len(exact)
            assert lo - d.rank_error <= q <= hi + d.rank_error


def test_transient_task_failure_is_retried(piped, prefect_server, monkeypatch):
    from prefect import flow

    import pixelscope.publish.step
    from pixelscope.pipeline.stages import stage
    from tasks.steps import run_step

    project, _ = piped
    real, calls = pixelscope.publish.step.publish_step, []

    def flaky(params, proj, *, progress=None):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("transient: disk busy")
        return real(params, proj, progress=progress)

    monkeypatch.setattr(pixelscope.publish.step, "publish_step", flaky)
    params = load_params(project / "params.yaml")
    params.pipeline.retry_delay_s = 0.5

    @flow
    def publish_once():
        return run_step(stage("publish"), params, project)

    assert publish_once()["counts"]["files_seen"] == 50
    assert len(calls) == 2


def test_a_plain_torchvision_script_loads_the_demo_export_with_the_ledgers_count(piped):
    """What the README shows a user: in the project's venv, a fresh interpreter that never imports
    pixelscope runs `import torchvision` and loads the curated ImageFolder tree (the venv's
    torchvision is a CUDA build beside a CPU torch: the .pth hook of `make install` makes it load)."""
    project, _ = piped
    ledger = pq.read_table(project / "data/curated/curation.parquet").to_pandas()
    expected = ledger[ledger["included"]].groupby("split").size().to_dict()
    script = ("import json, sys, torchvision\n"
              "print(json.dumps({s: len(torchvision.datasets.ImageFolder(f'data/curated/torchvision/{s}'))"
              " for s in sys.argv[1:]}))\n"
              "assert 'pixelscope.curate' not in sys.modules\n")
    r = sh([sys.executable, "-c", script, *sorted(expected)], project)
    assert json.loads(r.stdout) == expected and sum(expected.values()) > 0


def test_the_pipeline_command_writes_its_overrides_once(piped, prefect_server, monkeypatch):
    """`python -m flows.pipeline --set ...` validates the overrides, writes them into params.yaml once
    (the flow does, so DVC records what ran) and runs; it used to write them twice."""
    import flows.common
    import flows.pipeline

    project, _ = piped
    writes = []
    real = flows.common.set_params

    def counted(path, overrides):
        writes.append(overrides)
        return real(path, overrides)

    monkeypatch.setattr(flows.common, "set_params", counted)
    monkeypatch.chdir(project)
    before = load_params(project / "params.yaml").pipeline.retry_delay_s
    flows.pipeline.main(["--set", f"pipeline.retry_delay_s={before + 1}"])  # a knob no stage depends on
    assert writes == [{"pipeline": {"retry_delay_s": before + 1}}]
    assert load_params(project / "params.yaml").pipeline.retry_delay_s == before + 1


def test_a_users_error_is_not_retried(piped, prefect_server, monkeypatch):
    """The one retry rule: a PixelscopeError (here InputMissing) is an answer, so the task runs once and
    fails at once, with the error's message; it used to run three times, 2 s and 8 s apart."""
    from prefect import flow

    import pixelscope.publish.step
    from pixelscope.errors import InputMissing
    from pixelscope.pipeline.stages import stage
    from tasks.steps import run_step

    project, _ = piped
    calls = []

    def missing(params, proj, *, progress=None):
        calls.append(1)
        raise InputMissing("manifest not found: run `pixelscope ingest` first")

    monkeypatch.setattr(pixelscope.publish.step, "publish_step", missing)
    params = load_params(project / "params.yaml")
    params.pipeline.retry_delay_s = 0.5
    assert params.pipeline.retries >= 1

    @flow
    def publish_once():
        return run_step(stage("publish"), params, project)

    state = publish_once(return_state=True)
    assert state.is_failed() and "pixelscope ingest" in state.message
    assert len(calls) == 1


SLOW_PLUGIN = '''
import os, time
from pixelscope.features import feature

@feature("slow_marker", kind="numeric")
def slow_marker(view):
    time.sleep(0.15)
    with open(os.environ["PIXELSCOPE_TEST_PROGRESS"], "a") as fh:
        fh.write("x")
    return 1.0
'''


def test_killed_run_leaves_nothing_half_written_and_rerun_matches(tmp_path, prefect_server):
    project = make_project(tmp_path / "project")
    (project / "slow_plugin.py").write_text(SLOW_PLUGIN)
    set_param(project, "features.plugins", ["slow_plugin"])
    set_param(project, "pipeline.shard_size", 5)
    progress = tmp_path / "progress"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": f"{project}{os.pathsep}{REPO}",
           "PREFECT_API_URL": prefect_server, "PIXELSCOPE_TEST_PROGRESS": str(progress)}
    raw_before = tree_hashes(project / "data/raw")

    proc = subprocess.Popen([sys.executable, "-m", "flows.pipeline"], cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and (not progress.exists() or len(progress.read_text()) < 25):
        assert proc.poll() is None, "pipeline ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the flow process and its worker processes
    proc.wait()
    done_before_kill = len(progress.read_text())
    assert 25 <= done_before_kill < 50
    assert not (project / "data/interim/manifest.parquet").exists()  # no half-written artifact
    # SIGKILL allows no cleanup: the writer's temporary file may remain, and the next run sweeps it
    assert "ingest" not in (yaml.safe_load((project / "dvc.lock").read_text()) or {}).get("stages", {}) \
        if (project / "dvc.lock").exists() else True

    rerun = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not [p for p in project.rglob("*.tmp")], "temporary files of the killed run were not swept"
    redone = len(progress.read_text()) - done_before_kill
    assert redone < 50, "finished shards should come from the task cache, not be recomputed"
    assert tree_hashes(project / "data/raw") == raw_before  # raw data never modified

    # the same outputs as an uninterrupted run of the same step code
    sh(["pixelscope", "ingest", "-q", "--out", str(tmp_path / "clean.parquet"), "--set", f"paths.metrics={tmp_path}"],
       project,
       env={"PYTHONPATH": f"{project}{os.pathsep}{REPO}", "PIXELSCOPE_TEST_PROGRESS": str(tmp_path / "p2")})
    assert sha(project / "data/interim/manifest.parquet") == sha(tmp_path / "clean.parquet")
    prof = Profile.load(project / "data/processed/profile.json")
    assert (prof.files_seen, prof.ok) == (50, 48) and prof.sketch("slow_marker").count == 48
    assert "up to date" in dvc("status", cwd=project).stdout


def ui_lists_deployments(url: str, flows: list[str], out: Path) -> None:
    """The Prefect UI in Chromium (when installed) on a non-default port: its Deployments page lists
    the flows, so the UI talks to this server's API (it called :4200 before serve set the UI's API URL)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return  # .ci/run installs it; the CLI checks of the test still run
    from playwright.sync_api import sync_playwright

    hosts: set[str] = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
        page.goto(f"{url}/deployments")
        for flow in flows:
            page.get_by_text(flow, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(out / "prefect-deployments.png"))
        text = page.inner_text("body")
        browser.close()
    assert "Can't connect to Server API" not in text
    assert hosts == {url.split("/")[2]}, hosts


def ui_quick_run(url: str, deployment_id: str, out: Path) -> str:
    """Run a deployment from the Prefect UI (Run -> Quick run, its default parameters) and wait
    until the deployment's page lists the run as finished; returns the page text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/deployments/deployment/{deployment_id}")
        page.get_by_text("Entrypoint").first.wait_for(timeout=30_000)
        page.wait_for_timeout(2000)
        finished_before = page.locator("text=Completed").count()  # runs triggered earlier
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Quick run", exact=True).click()
        page.get_by_text("scheduled to start now").first.wait_for(timeout=30_000)
        deadline = time.time() + 240
        while True:  # the deployment page lists its runs with their state
            page.wait_for_timeout(3000)
            page.reload()
            page.get_by_text("Entrypoint").first.wait_for(timeout=30_000)
            text = page.inner_text("body")
            if page.locator("text=Completed").count() > finished_before or "Failed" in text or time.time() > deadline:
                break
        text += f"\ncompleted runs listed: {finished_before} before, {page.locator('text=Completed').count()} after"
        page.screenshot(path=str(out / "prefect-quick-run.png"))
        browser.close()
    return text


DEPLOYMENT = """
import asyncio, json, sys
from prefect.client.orchestration import get_client

async def main():
    async with get_client() as c:
        d = await c.read_deployment_by_name(sys.argv[1])
        print(json.dumps({"id": str(d.id), "parameters": d.parameters,
                          "schedules": [{"cron": s.schedule.cron, "active": s.active} for s in d.schedules]}))

asyncio.run(main())
"""


def test_served_deployment_runs_with_parameters_and_ctrl_c_stops_it(tmp_path):
    """`flows.serve` (what `make serve` runs): a real server + deployments; a run triggered by
    `prefect deployment run` with a parameter completes, and one from the UI's Quick run; the
    monitor deployment carries the cron of monitor.cron; Ctrl-C stops serve and the server."""
    import socket

    project = make_project(tmp_path / "project")
    set_param(project, "monitor.cron", "0 6 * * 1")
    set_param(project, "monitor.drop", "data/drops/latest")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    # COLUMNS: `prefect deployment ls` is a rich table; a narrow one would wrap or cut the names
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "COLUMNS": "200",
           "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api}
    log = open(tmp_path / "serve.log", "w")  # flow-run logs land here: shown when the run fails
    as_make_serve = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}  # `make serve` sets no API URL
    serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--port", str(port), "--project", str(project)],
                             cwd=REPO, env=as_make_serve, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    from pixelscope.pipeline.stages import STAGES as ALL_STAGES

    expected = [f"{flow}/pixelscope" for flow in ("pipeline", *(s.flow_name for s in ALL_STAGES), "monitor")]
    assert len(expected) == len(ALL_STAGES) + 2 and "version-raw-data/pixelscope" in expected
    try:
        # serve registers the deployments one after another: wait for all of them, not the first
        deadline = time.time() + 180
        missing = expected
        while missing and time.time() < deadline:
            ls = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=env, capture_output=True, text=True)
            missing = [name for name in expected if name not in ls.stdout]
            if missing:
                assert serve.poll() is None, "serve exited early:\n" + (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(2)
        assert not missing, f"not registered after 180 s: {missing}\n{ls.stdout}"
        # the UI pages its list by 10, in the order serve registered them: pipeline, version-raw-data, ingest, ...
        ui_lists_deployments(f"http://127.0.0.1:{port}", ["pipeline", "version-raw-data", "ingest"], tmp_path)
        run = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "pipeline/pixelscope",
                              "--param", f"project={project}", "--watch"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "serve.log").read_text()[-6000:]
        assert "Completed" in run.stdout + run.stderr
        assert (project / "reports/publish/summary.json").exists()
        assert "up to date" in dvc("status", cwd=project).stdout
        # a single-stage deployment (flows/steps.py:publish_flow) loads from its entrypoint and runs
        (project / "reports/publish/summary.json").unlink()
        one = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "publish/pixelscope",
                              "--param", f"project={project}", "--watch"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert one.returncode == 0, one.stdout + one.stderr + (tmp_path / "serve.log").read_text()[-6000:]
        assert (project / "reports/publish/summary.json").exists()

        def deployment(name: str) -> dict:
            r = subprocess.run([sys.executable, "-c", DEPLOYMENT, name], env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-3000:]
            return json.loads(r.stdout)

        monitor = deployment("monitor/pixelscope")  # the schedule from params.yaml, as the server holds it
        assert monitor["schedules"] == [{"cron": "0 6 * * 1", "active": True}]
        assert monitor["parameters"] == {"project": str(project), "drop": "data/drops/latest"}
        assert deployment("publish/pixelscope")["schedules"] == []  # only the monitor is scheduled
        if Path("/usr/bin/chromium").exists():  # a Quick run from the UI runs with the default parameters
            (project / "reports/publish/summary.json").unlink()
            text = ui_quick_run(f"http://127.0.0.1:{port}", deployment("publish/pixelscope")["id"], tmp_path)
            assert "Failed" not in text, (tmp_path / "serve.log").read_text()[-6000:]
            before, after = (int(n) for n in re.search(r"listed: (\d+) before, (\d+) after", text).groups())
            assert after == before + 1, text[-300:]
            assert (project / "reports/publish/summary.json").exists()
    finally:
        os.kill(serve.pid, signal.SIGINT)  # what Ctrl-C on `make serve` sends
        try:
            serve.wait(timeout=60)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
            log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]  # a clean Ctrl-C: exit 0
    leftovers = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert not leftovers, "the Prefect server outlived serve"


def test_reference_profile_is_read_at_a_git_rev_through_dvc(piped):
    """`validate.reference_rev`: the profile of a pinned version, read through DVC although the
    workspace has moved on."""
    from pixelscope.errors import InputMissing
    from pixelscope.profile.reference import load_reference

    project, _ = piped
    current = (project / "data/processed/profile.json").read_bytes()
    sh(["git", "add", "-A", "."], project)
    sh(["git", "commit", "-qm", "pinned version", "--allow-empty"], project)
    sh(["git", "tag", "-f", "pinned"], project)
    (project / "data/processed/profile.json").write_bytes(b"{}")  # the workspace moves on
    try:
        params = load_params(project / "params.yaml", {"validate": {"reference_rev": "pinned"}})
        ref = load_reference(params, project)
        assert ref is not None and ref.serialize() == Profile.deserialize(current).serialize()
        bad = load_params(project / "params.yaml", {"validate": {"reference_rev": "no-such-rev"}})
        with pytest.raises(InputMissing, match="validate.reference_rev 'no-such-rev'"):
            load_reference(bad, project)
    finally:
        (project / "data/processed/profile.json").write_bytes(current)


def test_failed_validation_stops_the_pipeline_before_publish(tmp_path, prefect_server):
    from flows.pipeline import pipeline
    from pixelscope.config import parse_params
    from pixelscope.demo import build_demo

    project = make_project(tmp_path / "project")
    build_demo(tmp_path / "other", tmp_path / "new", per_class=8, workers=1)  # a shifted batch as the reference
    p = parse_params({"ingest": {"workers": 1}})
    ingest_to(p, tmp_path / "new", tmp_path / "new.parquet")
    profile_to(p, tmp_path / "new.parquet", tmp_path / "new.json")
    with pytest.raises(Exception, match="validation failed"):
        pipeline(str(project), overrides={"validate": {"reference": str(tmp_path / "new.json"), "on_failure": "fail"}})
    results = json.loads((project / "reports/validate/results.json").read_text())
    assert not results["success"] and results["drifted"]
    assert not (project / "reports/publish").exists()  # stopped before publishing
    status = dvc("status", cwd=project).stdout
    assert "validate:" in status and "publish:" in status


def test_the_dashboard_opens_the_bundle_of_a_git_rev_read_through_dvc(piped, tmp_path):
    """`pixelscope dashboard REV`: the bundle as committed at REV, fetched through DVC although the
    workspace bundle has moved on; served on 127.0.0.1 and removed when the dashboard stops.
    An unknown rev is a clear error naming it."""
    project, _ = piped
    dvc("commit", "-f", "-q", "publish", cwd=project)  # earlier tests republished: record this bundle in dvc.lock
    sh(["git", "add", "-A", "."], project)
    sh(["git", "commit", "-qm", "a version to review", "--allow-empty"], project)
    sh(["git", "tag", "-f", "reviewed"], project)
    summary = project / "reports/publish/summary.json"
    committed = summary.read_bytes()
    summary.write_text(json.dumps({**json.loads(committed), "manifest": {"files_seen": -1}}))  # the workspace moves on
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(["pixelscope", "dashboard", "reviewed", "--port", str(port)], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        # keep reading what the dashboard and Streamlit print, as a terminal would: a full pipe blocks
        # their writes, and a blocked Streamlit cannot stop on Ctrl-C (seen once in CI under load)
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        assert first.startswith("dashboard over ") and f"http://127.0.0.1:{port}" in first, first
        folder = Path(first.split("dashboard over ", 1)[1].rsplit(": http", 1)[0].strip())
        assert folder != project / "reports/publish" and (folder / "summary.json").read_bytes() == committed
        assert {p.name for p in folder.iterdir()} >= {"summary.json", "profile.json", "manifest.parquet", "thumbnails"}
        if not wait_healthy(f"http://127.0.0.1:{port}"):
            pytest.fail("the dashboard did not start")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)
        summary.write_bytes(committed)
    assert not folder.exists(), "the fetched bundle outlived the dashboard"
    bad = sh(["pixelscope", "dashboard", "no-such-rev"], project, check=False)
    assert bad.returncode != 0 and "'no-such-rev' is neither a bundle folder nor a git rev" in bad.stdout + bad.stderr
