"""The layout's promises, checked: layers, light readers, one stage table, narrow code deps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pixelscope.pipeline import stages as st

CORE = REPO / "pixelscope"


def fresh(code: str) -> str:
    """Run code in a new interpreter (nothing preloaded), return its stdout."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_orchestration_or_ui():
    offenders = {str(p.relative_to(REPO)): sorted(imported_roots(p) & {"prefect", "prefect_dask", "streamlit"})
                 for p in CORE.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_errors_module_imports_nothing_from_the_package():
    assert not {r for r in imported_roots(CORE / "errors.py")} - {"__future__"}


@pytest.mark.parametrize("module", ["pixelscope.profile", "pixelscope.validate.drift", "pixelscope.validate.suites"])
def test_profile_and_drift_readers_are_light(module):
    """A dashboard reads and compares profiles without torch, OpenCV, Prefect or Streamlit."""
    loaded = json.loads(fresh(f"import {module}, sys, json; print(json.dumps(sorted(sys.modules)))"))
    assert not {"torch", "cv2", "prefect", "streamlit", "great_expectations"} & set(loaded)


def test_dvc_yaml_is_generated_from_the_stage_table():
    r = subprocess.run([sys.executable, "-m", "pixelscope.pipeline.stages", "--check"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(committed) == [s.name for s in st.DVC_STAGES]
    for s in st.DVC_STAGES:
        entry = committed[s.name]
        given = [f"${{{k}}}" for k in s.optional_deps if k == "curate.decisions"]  # the repo's params.yaml sets it
        assert entry["deps"] == [*s.deps, *given, *s.code()]
        assert entry.get("params", []) == list(s.params)
        outs = [o if isinstance(o, str) else next(iter(o)) for o in entry["outs"]]
        assert outs == [o.path for o in s.outs]
        assert bool(entry.get("metrics")) == s.metrics


def test_a_stale_dvc_yaml_is_caught(tmp_path):
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text().replace("pixelscope/validate", "pixelscope"))
    r = subprocess.run([sys.executable, "-m", "pixelscope.pipeline.stages", "--check"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 1 and "--write" in r.stderr


def covered(module_file: str, deps: list[str]) -> bool:
    return any(module_file == d or module_file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", [pytest.param(s.name, marks=[pytest.mark.slow] if s.name in ("preprocess", "embed") else [])
                                   for s in st.STAGES])  # those two import torch: ~4 s each
def test_each_stage_declares_every_module_its_step_loads(stage):
    """Import the step in a fresh interpreter: every pixelscope module loaded must be a declared
    code dep of the stage, so editing it reruns the stage (no stale outputs)."""
    s = st.stage(stage)
    # modules already there at start (the venv's torchvision import hook, a .pth) are not the step's
    code = (f"import importlib, sys, json; before = set(sys.modules); importlib.import_module({s.module!r}); "
            "print(json.dumps([m.__file__ for n, m in list(sys.modules.items()) "
            "if n not in before and n.split('.')[0] == 'pixelscope' and getattr(m, '__file__', None)]))")
    loaded = [Path(f).resolve().relative_to(REPO).as_posix() for f in json.loads(fresh(code))]
    deps = s.code()
    missing = [f for f in loaded if not covered(f, deps)]
    assert not missing, f"{stage} loads {missing} but declares only {deps}"
    # and the deps stay narrow: no stage but validate sees validate/drift.py, none but embed/preprocess sees embed/
    if stage not in ("validate",):
        assert not covered("pixelscope/validate/drift.py", deps)
    if stage not in ("preprocess", "embed"):
        assert not covered("pixelscope/embed/models.py", deps)
    assert not covered("pixelscope/pipeline/stages.py", deps)  # adding a stage reruns nothing
    assert not covered("pixelscope/cli/app.py", deps)


def test_static_closure_sees_imports_inside_functions():
    """embed/step imports the inference module inside a function; the closure still has it."""
    assert "pixelscope.embed.infer" in st.module_closure("pixelscope.embed.step")
    assert "pixelscope/embed" in st.stage("embed").code()


def test_code_hash_follows_the_stage_code(tmp_path, monkeypatch):
    """Editing a module the ingest step imports changes its hash (the shard cache keys); editing one it
    does not import leaves it alone."""
    import shutil

    shutil.copytree(CORE, tmp_path / "pixelscope", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(st, "SOURCE_ROOT", tmp_path)
    ingest = st.stage("ingest")
    h = ingest.code_hash()
    assert h == ingest.code_hash() and len(h) == 16 and h != st.stage("validate").code_hash()
    with open(tmp_path / "pixelscope" / "validate" / "drift.py", "a") as f:  # not an ingest dep
        f.write("\n# an edit\n")
    assert ingest.code_hash() == h
    with open(tmp_path / "pixelscope" / "features" / "builtin.py", "a") as f:  # an ingest dep
        f.write("\n# an edit\n")
    assert ingest.code_hash() != h


@pytest.mark.slow
def test_every_stage_has_a_command_a_flow_and_a_deployment():
    import flows.steps
    from flows.serve import deployments
    from flows.steps import FLOWS, SHARDED
    from pixelscope.cli.app import app

    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {s.command_name for s in st.STAGES} <= commands  # curate is a group: `curate` runs it, `curate diff`
    assert set(FLOWS) == {s.name for s in st.STAGES}
    assert {name: f.name for name, f in FLOWS.items()} == {s.name: s.flow_name for s in st.STAGES}
    assert {name: f.description for name, f in FLOWS.items()} == {s.name: s.doc for s in st.STAGES}
    assert set(SHARDED) == {s.name for s in st.STAGES if s.sharded}
    for f in FLOWS.values():  # deployments load a flow by entrypoint: flows/steps.py:<function name>
        assert getattr(flows.steps, f.fn.__qualname__) is f
    made = deployments(REPO)
    assert {d.name for d in made} == {"pixelscope"}
    assert {d.flow_name for d in made} == {s.flow_name for s in st.STAGES} | {"pipeline", "monitor"}


def defined_functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_each_stage_command_and_flow_is_written_out_where_grep_finds_it():
    """`grep -rn "def ingest" pixelscope/cli flows` finds the command and the flow: no signatures built
    at run time, no flows injected into globals()."""
    commands = defined_functions(CORE / "cli" / "stages.py")
    flows = defined_functions(REPO / "flows" / "steps.py")
    for s in st.STAGES:
        assert s.command_name.replace("-", "_") in commands, s.name
        assert f"{s.flow_name.replace('-', '_')}_flow" in flows, s.name
    for path in (CORE / "cli" / "stages.py", REPO / "flows" / "steps.py"):
        assert "globals()" not in path.read_text() and "__signature__" not in path.read_text()


def test_every_step_is_a_package_step_module():
    """One shape: each stage's step is `<package>/step.py` (preprocess and embed share embed/step.py)."""
    for s in st.STAGES:
        package, _, module = s.module.rpartition(".")
        assert module == "step" and package.count(".") == 1, s.step


def test_every_step_follows_the_contract():
    import inspect

    for s in st.STAGES:
        sig = inspect.signature(s.function())
        assert list(sig.parameters)[:2] == ["params", "project"], s.name
        assert sig.parameters["progress"].kind is inspect.Parameter.KEYWORD_ONLY, s.name
        assert sig.return_annotation in ("StepResult", st.StepResult), s.name


def test_one_override_rule_for_every_registry():
    from pixelscope.embed.models import MODELS, model
    from pixelscope.embed.transforms import TRANSFORMS, transform
    from pixelscope.errors import ConfigError
    from pixelscope.features import feature
    from pixelscope.features import registry as features

    features.registered()
    cases = [(features.FEATURES, "sharpness", lambda: feature("sharpness")(lambda v: 0.0),
              lambda: feature("sharpness", replace=True)(lambda v: 0.0)),
             (TRANSFORMS, "resize", lambda: transform("resize")(lambda **o: None),
              lambda: transform("resize", replace=True)(lambda **o: None)),
             (MODELS, "efficientnet_lite0", lambda: model("efficientnet_lite0")(lambda cfg: None),
              lambda: model("efficientnet_lite0", replace=True)(lambda cfg: None))]
    for reg, name, plain, explicit in cases:
        with reg.scoped():
            before = reg[name]
            with pytest.raises(ConfigError, match=f"{name}' is already registered by the built-in"):
                plain()
            assert reg[name] is before  # nothing replaced
            explicit()
            assert reg[name] is not before
        assert reg[name] is before  # scoped() undid it


def test_readme_layout_matches_the_tree():
    """The README's layout block names every package and top-level module of pixelscope/, and nothing else."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Layout"):].split("```")[1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pixelscope/"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" "))
    listed = {line.split()[0] for line in lines[start + 1:end] if line.startswith("  ") and not line.startswith("   ")}
    actual = {f"{p.name}/" for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    actual |= {p.name for p in CORE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert listed == actual
    for top in ("tasks/", "flows/", "tests/", "benchmarks/", "expectations/", "dvc.yaml", "params.yaml"):
        assert any(line.startswith(top) for line in lines), top
