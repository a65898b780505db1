"""Review decisions: the file (append-only, locked, named errors), the CLI over it, and curate
replaying it into the ledger and the exports (undo gives the earlier set back byte for byte)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_curate import ledger, photos, project

from pixelscope.curate import decisions
from pixelscope.curate.step import curate_step
from pixelscope.errors import BadInput, ConfigError

HOSTILE_REASON = "it's blurry'); DROP TABLE images; -- \"quoted\" ; ![x](http://198.51.100.3/a.png)"


def decide(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelscope", "decide", *args], cwd=root, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def reviewed(corpus, tmp_path):
    """Ants and bees with a byte copy and a half-size copy of one ant (one near-duplicate group), and
    two bees the label-error finder (planted here in the issues table) suggests are ants."""
    from PIL import Image

    ants, bees = photos(corpus, "ants", 6), photos(corpus, "bees", 6)
    extra = tmp_path / "extra"
    extra.mkdir()
    im = Image.open(ants[0])
    im.resize((im.width // 2, im.height // 2)).save(extra / "small_ant.jpg", quality=92)
    p, root = project(tmp_path / "project", {"ants": ants + [extra / "small_ant.jpg"], "bees": bees},
                      exclude=["unreadable", "exact_duplicate", "near_duplicate", "label_error"])
    issues = pq.read_table(root / p.paths.issues)
    paths = issues.column("path").to_pylist()
    suspects = [f"bees/{bees[0].name}", f"bees/{bees[1].name}"]
    flag = [x in suspects for x in paths]
    planted = (("label_error", flag, pa.bool_()), ("label_error_score", [0.9 if f else 0.0 for f in flag], pa.float64()),
               ("suggested_label", ["ants" if f else None for f in flag], pa.string()))
    for name, values, kind in planted:
        if name in issues.schema.names:
            issues = issues.drop_columns([name])
        issues = issues.append_column(pa.field(name, kind), pa.array(values, kind))
    pq.write_table(issues, root / p.paths.issues)
    return p, root, suspects


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_every_action_from_the_cli_lands_in_the_ledger_and_undo_restores_the_set(reviewed):
    p, root, (accepted, rejected) = reviewed
    curate_step(p, root)
    before = {f: sha(root / "data" / "curated" / f) for f in ("curation.parquet", "torchvision/SHA256SUMS")}
    led0 = ledger(root)
    group = led0.loc[led0["path"] == "ants/small_ant.jpg", "duplicate_group"].iloc[0]
    kept0 = led0.loc[(led0["duplicate_group"] == group) & led0["included"], "path"].tolist()
    assert len(kept0) == 1 and kept0 != ["ants/small_ant.jpg"]
    ant, bee = led0.loc[led0["included"] & led0["path"].str.startswith("ants/"), "path"].iloc[-1], \
        led0.loc[led0["included"] & led0["path"].str.startswith("bees/"), "path"].iloc[-1]

    steps = [("exclude", "--path", ant, "--reason", HOSTILE_REASON),
             ("relabel", "--path", bee, "--label", "wasps", "--reason", "a wasp"),
             ("keep", "--path", "ants/small_ant.jpg", "--reason", "the sharper crop"),
             ("accept", "--path", accepted),
             ("reject", "--path", rejected, "--reason", "it is a bee"),
             ("tag", "--where", "label = 'bees'", "--tag", "stripes")]
    for args in steps:
        r = decide(root, *args)
        assert r.returncode == 0, (args, r.stderr)
    file = root / "curation" / "decisions.jsonl"
    lines = file.read_bytes()
    r = curate_step(p.model_copy(update={"curate": p.curate.model_copy(update={
        "slices": {"striped": "list_contains(tags, 'stripes')"}})}), root)
    assert file.read_bytes() == lines  # a reader never rewrites the file
    led = ledger(root).set_index("path")
    assert not led.at[ant, "included"] and led.at[ant, "first_reason"] == "excluded in review"
    assert HOSTILE_REASON in led.at[ant, "reasons"]  # stored and shown verbatim, never run
    assert led.at[bee, "label"] == "wasps" and "relabelled bees → wasps in review: a wasp" in led.at[bee, "label_fixed_by"]
    assert led.at["ants/small_ant.jpg", "included"] and "kept instead of" in led.at["ants/small_ant.jpg", "review"]
    assert not led.at[kept0[0], "included"] and "duplicate of ants/small_ant.jpg" in led.at[kept0[0], "reasons"]
    assert led.at[accepted, "included"] and led.at[accepted, "label"] == "ants"
    assert "suggestion accepted: bees → ants" in led.at[accepted, "label_fixed_by"]
    assert led.at[rejected, "included"] and led.at[rejected, "label"] == "bees"  # verified: not left out as label_error
    assert "verified in review" in led.at[rejected, "review"]
    bees_rows = led[led["original_label"] == "bees"]
    assert all(list(t) == ["stripes"] for t in bees_rows["tags"]) and all("striped" in s for s in bees_rows["slices"])
    assert r.details["counts"]["decisions"] == {"accept_suggestion": 1, "exclude": 1, "keep": 1, "reject_suggestion": 1,
                                               "relabel": 1, "tag": len(bees_rows)}
    card = (root / "data" / "curated" / "README.md").read_text()
    assert "## Review decisions" in card and "| relabel | 1 |" in card
    assert (root / "data" / "curated" / "torchvision" / "train" / "wasps").exists() or \
        any((root / "data" / "curated" / "torchvision").glob("*/wasps"))

    listed = json.loads(decide(root, "list", "--json").stdout)
    assert {"entry", "action", "id", "path", "value", "reason", "author", "time"} <= set(listed[0])
    assert len(listed) == 5 + len(bees_rows)
    for batch in {e["batch"] for e in listed}:
        r = decide(root, "undo", batch, "--reason", "start over")
        assert r.returncode == 0, r.stderr
    assert all(e["undone"] for e in json.loads(decide(root, "list", "--json").stdout) if e["action"] != "undo")
    curate_step(p, root)
    assert {f: sha(root / "data" / "curated" / f) for f in before} == before  # the earlier set, byte for byte


def test_a_decision_on_an_image_no_longer_there_is_reported_not_applied(tmp_path):
    import pandas as pd

    from pixelscope.config import parse_params
    from pixelscope.curate.ledger import ReviewRows

    frame = pd.DataFrame({"id": ["a" * 64, "b" * 64], "path": ["x.jpg", "y.jpg"]})
    made = decisions.make("exclude", [("c" * 64, "gone.jpg"), ("a" * 64, "x.jpg")], author="ana", reason="r")
    rows = ReviewRows(frame, decisions.resolve(made))
    assert [d.path for d in rows.stale] == ["gone.jpg"]
    assert parse_params({}).curate.decisions == Path("curation/decisions.jsonl")


@pytest.mark.parametrize("line, message", [
    (b"not json", "line 2: not a JSON object"),
    (b"[1, 2]", "line 2: not a JSON object"),
    (b'{"entry": "e-1"}', "line 2: no batch, action"),
    (b"\xff\xfe", "line 2: not UTF-8"),
])
def test_a_malformed_line_is_named_with_its_file_and_line(tmp_path, line, message):
    path = tmp_path / "decisions.jsonl"
    good = decisions.make("exclude", [("a" * 64, "x.jpg")], author="ana")
    decisions.append(path, good)
    path.write_bytes(path.read_bytes() + line + b"\n")
    before = path.read_bytes()
    with pytest.raises(BadInput, match=rf"{path}.*{message}"):
        decisions.read(path)
    assert path.read_bytes() == before


def test_undo_of_an_undo_restores_and_the_latest_entry_per_kind_wins():
    a = ("a" * 64, "x.jpg")
    ex = decisions.make("exclude", [a], author="ana")
    inc = decisions.make("include", [a], author="bo")
    tag = decisions.make("tag", [a], value="t", author="ana")
    undo1 = decisions.undo_entries(inc[0].entry, inc, author="ana")
    state = decisions.resolve(ex + inc + tag + undo1)
    assert state.inclusion["a" * 64].action == "exclude" and state.tags == {"a" * 64: ["t"]}
    undo2 = decisions.undo_entries(undo1[0].entry, undo1, author="ana")
    state = decisions.resolve(ex + inc + tag + undo1 + undo2)
    assert state.inclusion["a" * 64].action == "include"
    untag = decisions.make("untag", [a], value="t", author="ana")
    assert decisions.resolve(ex + tag + untag).tags == {}


def test_bad_decisions_are_named_errors():
    with pytest.raises(ConfigError, match="unknown action"):
        decisions.make("delete", [("a" * 64, "x")], author="a")
    with pytest.raises(ConfigError, match="label is required"):
        decisions.make("relabel", [("a" * 64, "x")], value="  ", author="a")
    with pytest.raises(ConfigError, match="keep names one image"):
        decisions.make("keep", [("a" * 64, "x"), ("b" * 64, "y")], author="a")
    with pytest.raises(ConfigError, match="no entry or batch"):
        decisions.undo_entries("e-nothing", [], author="a")


WRITER = """
import sys
from pathlib import Path
from pixelscope.curate import decisions
path, who = Path(sys.argv[1]), sys.argv[2]
for i in range(1000):
    decisions.append(path, decisions.make("tag", [(f"{i:064x}", f"{who}/{i}.jpg")], value=who, author=who,
                                          reason="x" * (i % 300)))
"""


def test_two_processes_writing_1000_entries_each_lose_nothing(tmp_path):
    path = tmp_path / "decisions.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who]) for who in ("tab", "cli")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    got = decisions.read(path)
    assert len(got) == 2000 and len({d.entry for d in got}) == 2000
    for who in ("tab", "cli"):
        assert sorted(int(d.path.split("/")[1][:-4]) for d in got if d.author == who) == list(range(1000))


def test_cli_picks_images_by_id_prefix_path_and_filter_and_refuses_bad_picks(planted_project):
    root = planted_project
    led = pq.read_table(root / "data" / "interim" / "manifest.parquet").to_pandas()
    first = led.iloc[0]
    r = decide(root, "exclude", "--id", first["id"][:10], "--json")
    assert r.returncode == 0, r.stderr
    assert [e["path"] for e in json.loads(r.stdout)] == [first["path"]]
    for args, message in [(("exclude", "--id", "abc"), "at least 6"),
                          (("exclude", "--path", "nope.jpg"), "no such path"),
                          (("exclude", "--where", "width >"), "not one SQL expression"),
                          (("exclude", "--where", "width < 0"), "no image picked"),
                          (("undo", "e-missing"), "no entry or batch")]:
        r = decide(root, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


@pytest.fixture
def planted_project(corpus, tmp_path):
    p, root = project(tmp_path / "p", {"ants": photos(corpus, "ants", 3)})
    return root


def test_the_curate_diff_names_added_dropped_moved_and_relabelled():
    import pandas as pd

    from pixelscope.curate.diff import diff

    old = pd.DataFrame({"path": ["a", "b", "c", "d", "e"], "included": [True, True, True, True, False],
                        "split": ["train", "val", None, "train", None], "label": ["x", "y", "z", None, "x"]})
    new = pd.DataFrame({"path": ["a", "b", "c", "d", "e"], "included": [True, False, True, True, True],
                        "split": ["val", "val", None, "train", "test"], "label": ["x", "y", "w", None, "x"]})
    d = diff(old, new, {"recipe": 1}, {"recipe": 1})
    assert d["added"] == ["e"] and d["dropped"] == ["b"] and d["moved"] == ["a"] and d["relabeled"] == ["c"]
    assert d["moves"] == {"a": ["train", "val"]} and d["kept"] == 3 and d["stable"] is False


def test_undo_takes_several_entries_as_one_batch_and_names_a_missing_one():
    a, b = ("a" * 64, "x.jpg"), ("b" * 64, "y.jpg")
    made = decisions.make("exclude", [a], author="ana") + decisions.make("tag", [b], value="t", author="ana")
    undone = decisions.undo_entries([d.entry for d in made], made, author="bo")
    assert [u.value for u in undone] == [d.entry for d in made] and len({u.batch for u in undone}) == 1
    assert decisions.resolve(made + undone).ids() == set()
    with pytest.raises(ConfigError, match="e-missing"):
        decisions.undo_entries([made[0].entry, "e-missing"], made, author="bo")


def test_saving_a_slice_into_a_broken_params_file_is_a_named_error_and_writes_nothing(tmp_path):
    from pixelscope.curate.slices import save_slice

    params = tmp_path / "params.yaml"
    params.write_text("curate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        save_slice(params, "dark", "brightness_mean < 0.2")
    assert params.read_text() == "curate: [unclosed\n"
    with pytest.raises(ConfigError, match="slice name"):
        save_slice(params, "no spaces", "width > 1")
