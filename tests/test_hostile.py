"""Hostile input, crafted links and faults: each case a probe found, kept so that it stays closed.

Untrusted: image files, file names, annotation / predictions / label-fix files, dashboard URLs and
anything a link carries (SECURITY.md). Each test names the hole it guards.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelscope.curate.select import Images
from pixelscope.errors import ConfigError

LABELS = ["cat", "dog", "a;b", "cat", "bird", "dog", "cat"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The filter engine both ways it runs: over the manifest + issues files (curate) and over a
    frame in memory (the dashboard)."""
    root = tmp_path_factory.mktemp("where")
    n = len(LABELS)
    manifest = pa.table({"id": [f"{i:064x}" for i in range(n)], "path": [f"{lab}/{i}.jpg" for i, lab in enumerate(LABELS)],
                         "label": LABELS, "split": [None] * n, "status": ["ok"] * n, "width": list(range(10, 10 + n))})
    pq.write_table(manifest, root / "m.parquet")
    issues = pa.table({"id": manifest["id"], "path": manifest["path"], "blurry": [i % 2 == 0 for i in range(n)]})
    pq.write_table(issues, root / "i.parquet")
    return Images(root / "m.parquet", root / "i.parquet"), Images.over(manifest.to_pandas())


# --- 2. `where` cannot break out of its wrapper ---------------------------------------------------

BREAKOUTS = ["label = 'cat') AS BOOLEAN), false) FROM images ORDER BY random() --",
             "true) AS BOOLEAN), false) FROM images LIMIT 3 --",
             "true; DROP TABLE images", "label = 'cat', width > 1", "1) FROM images UNION ALL SELECT true --"]


@pytest.mark.parametrize("expression", BREAKOUTS)
def test_a_filter_is_one_expression_and_cannot_close_its_wrapper(engines, expression):
    """It was pasted into `SELECT coalesce(CAST((...) AS BOOLEAN), false) FROM images`: the first of
    these silently selected other images, the second crashed the CLI and the dashboard."""
    for engine in engines:
        with pytest.raises(ConfigError, match=r"curate.where: .* is not one SQL expression"):
            engine.where(expression, "curate.where")


def test_a_semicolon_inside_a_string_is_a_value_not_a_separator(engines):
    """`label <> 'a;b'` was refused because of its ';'."""
    want = np.array([lab != "a;b" for lab in LABELS])
    for engine in engines:
        assert (engine.where("label <> 'a;b'", "curate.where") == want).all()


def test_a_filter_must_be_a_condition_and_keeps_manifest_order(engines):
    sorted_engine, frame_engine = engines
    for engine in engines:
        with pytest.raises(ConfigError, match=r"'width \+ 1' is BIGINT, not a condition"):
            engine.where("width + 1", "curate.where")
        got = engine.where("width >= 12 AND label = 'cat'", "curate.where")
        assert got.tolist() == [w >= 12 and lab == "cat" for w, lab in zip(range(10, 17), LABELS)]
    assert sorted_engine.where("blurry", "curate.where").tolist() == [i % 2 == 0 for i in range(len(LABELS))]


# --- 3. a query has limits ------------------------------------------------------------------------

def test_a_runaway_filter_is_stopped_and_says_so(engines):
    """`range(1e11)` used to run until killed (and held the dashboard's one lock meanwhile); it is now
    refused before it runs, so a self-join of `images` twelve times (7^12 rows) stands in for a
    query that is allowed and slow."""
    runaway = "(SELECT count(*) FROM " + ", ".join(f"images t{i}" for i in range(12)) + ") > 0"
    for engine in engines:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=r"ran longer than 1 s and was stopped"):
            engine.where(runaway, "filter", timeout_s=1)
        assert time.perf_counter() - t0 < 10
        assert engine.where("label = 'dog'", "filter").sum() == 2  # the engine still answers afterwards


@pytest.mark.parametrize("expression, refused", [
    ("length(repeat('x', 1500000000)) > 0", "repeat"),  # measured before: 2.9 GB outside DuckDB's limit
    ("length(lpad(label, 1500000000, 'x')) > 0", "lpad"),
    ("len(range(100000000000)) > 0", "range"),
    ("(SELECT count(*) FROM range(100000000000)) > 0", "table other than images"),
    ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "table other than images"),
    ("(SELECT count(*) FROM duckdb_settings()) > 0", "table other than images"),
    ("length(format('{:>1500000000}', label)) > 0", "format"),
])
def test_a_filter_that_could_allocate_without_bound_is_refused_before_it_runs(engines, expression, refused):
    for engine in engines:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=re.escape(refused)):
            engine.where(expression, "curate.where")
        assert time.perf_counter() - t0 < 1


def test_the_allowlist_keeps_the_filters_people_write(engines):
    for engine in engines:
        for expression, hits in [("width > (SELECT avg(width) FROM images)", 3),
                                 ("regexp_matches(path, '^(cat|dog)/') AND width % 2 = 1", 3),
                                 ("lower(label) IN ('cat', 'dog') OR starts_with(path, 'bird')", 6),
                                 ("coalesce(split, 'train') = 'train' AND abs(width - 12) <= 1", 3),
                                 ("label LIKE 'c%' AND label <> 'a;b' AND width::DOUBLE / 2 > 5", 2)]:
            assert engine.where(expression, "curate.where").sum() == hits, expression


def test_the_engine_runs_with_bounded_threads_and_memory_and_cannot_unset_them(engines):
    for engine in engines:
        settings_now = dict(engine.db.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('threads', 'memory_limit', "
            "'enable_external_access', 'lock_configuration')").fetchall())
        assert settings_now["threads"] == "2" and settings_now["enable_external_access"] == "false"
        assert settings_now["lock_configuration"] == "true" and settings_now["memory_limit"].startswith("953")  # 1 GB
        with pytest.raises(ConfigError):
            engine.where("(SELECT 1 FROM (SET threads = 64)) = 1", "filter")


# --- property: random expressions never escape, never crash, one value per row --------------------

TOKENS = ["label", "width", "blurry", "id", "'cat'", "'a;b'", "1", "0.5", "NULL", "true", "(", ")", ")", "=", "<>",
          ">", "AND", "OR", "NOT", "IN", ",", ";", "--", "'", "SELECT", "FROM", "images", "LIMIT", "ORDER BY",
          "random()", "count(*)", "length(label)", "CAST(", "AS BOOLEAN", "UNION", "read_csv('/etc/passwd')"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12))
def test_random_expressions_never_escape_never_crash_and_give_one_value_per_row(engines, tokens):
    expression = " ".join(tokens)
    for engine in engines:
        try:
            got = engine.where(expression, "filter", timeout_s=5)
        except ConfigError:
            continue
        assert got.dtype == bool and got.shape == (len(LABELS),)


def test_reading_files_from_a_filter_is_refused(engines):
    """Refused twice: by the allowlist before anything runs, and by the locked engine underneath it."""
    import duckdb

    for engine in engines:
        with pytest.raises(ConfigError, match="a table other than images"):
            engine.where("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "filter")
        with pytest.raises(duckdb.PermissionException):
            engine.db.execute("SELECT count(*) FROM read_csv('/etc/passwd')").fetchall()


def test_the_frame_engine_filters_a_dataframe():
    frame = pd.DataFrame({"label": LABELS})
    assert Images.over(frame).where("label = 'cat'", "filter").sum() == 3


# --- 4. a Compare link names only profiles under the project and its bundle ----------------------

def test_a_compare_link_cannot_probe_or_read_server_paths(tmp_path):
    """`?a_path=/etc/shadow` was an existence oracle and `/dev/zero` ate memory: outside the allowed
    roots, not a regular file, or too big, every answer is the same refusal."""
    import os

    from dashboards.selection import linked_profile
    from pixelscope.errors import BadInput

    root = tmp_path / "project"
    (root / "reports" / "publish").mkdir(parents=True)
    good = root / "reports" / "publish" / "profile.json"
    good.write_text("{}")
    (root / "escape.json").symlink_to("/etc/passwd")
    os.mkfifo(root / "fifo.json")
    assert linked_profile(str(root / "reports" / "publish"), [root]) == good.resolve()
    assert linked_profile(str(good), [root]) == good.resolve()
    answers = set()
    for hostile in ("/etc/shadow", "/etc/passwd", "/nonexistent/x.json", "/dev/zero", str(root / "escape.json"),
                    str(root / "fifo.json"), str(root / ".." / ".." / "etc" / "passwd"), "\0bad"):
        with pytest.raises(BadInput) as e:
            linked_profile(hostile, [root])
        answers.add(str(e.value).replace(repr(hostile), "PATH"))
    assert len(answers) == 1  # the same words whether the path exists or not


@pytest.mark.slow
def test_the_compare_page_refuses_a_server_path_from_the_url(demo_raw, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import REPO, ingest_to
    from pixelscope.config import parse_params
    from pixelscope.profile import Profile

    bundle = tmp_path / "bundle"
    p = parse_params({"ingest": {"workers": 1}})
    ingest_to(p, demo_raw / "raw", tmp_path / "m.parquet")
    bundle.mkdir()
    Profile.from_manifest(tmp_path / "m.parquet").save(bundle / "profile.json")
    (bundle / "summary.json").write_text('{"versions": {"raw": {}}, "manifest": {}}')
    monkeypatch.setenv("PIXELSCOPE_BUNDLE", str(bundle))
    monkeypatch.chdir(tmp_path)
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=120)
    at.query_params["a"] = "another bundle or profile file…"
    at.query_params["a_path"] = "/etc/passwd"
    at.run()
    at.switch_page("views/compare.py")
    at.run()
    errors = [e.value for e in at.error]
    assert any("not a bundle folder or profile file under" in e for e in errors), errors


# --- 13. two writers of one output; 16. permissions ---------------------------------------------

def test_a_sweep_leaves_the_temporary_files_of_a_live_writer(tmp_path):
    """Two ingests to the same -o: the second's sweep of stale temp files deleted the first's live one
    (FileNotFoundError). Only a dead writer's leftovers are swept now."""
    import subprocess
    import sys

    from pixelscope.io.atomic import atomic_path, sweep_stale_temps

    target = tmp_path / "manifest.parquet"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".manifest.parquet.{live.pid}.k3j2h1g0.tmp"
        theirs.write_bytes(b"being written")
        dead = tmp_path / f".manifest.parquet.{gone.stdout.strip()}.a1b2c3d4.tmp"  # its writer has exited
        dead.write_bytes(b"left by kill -9")
        old_style = tmp_path / ".manifest.parquet.abcdefgh.tmp"  # from before pids were written
        old_style.write_bytes(b"left by kill -9")
        assert sweep_stale_temps(target) == 2
        assert theirs.exists() and not dead.exists() and not old_style.exists()
        with atomic_path(target) as tmp:  # a second writer runs beside the first, and finishes
            tmp.write_bytes(b"second")
        assert target.read_bytes() == b"second" and theirs.exists()
    finally:
        live.kill()
        live.wait()
    assert sweep_stale_temps(target) == 1 and not theirs.exists()


def test_artifacts_are_readable_by_the_group_as_the_umask_says(tmp_path):
    """mkstemp makes files 0600 and they kept it: a colleague could not read a published bundle."""
    import os
    import stat

    from pixelscope.io.atomic import write_bytes_atomic

    old = os.umask(0o022)
    try:
        import importlib

        import pixelscope.io.atomic as atomic

        importlib.reload(atomic)
        atomic.write_bytes_atomic(tmp_path / "summary.json", b"{}")
        assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)
        importlib.reload(atomic)
    write_bytes_atomic(tmp_path / "other.json", b"{}")
    assert stat.S_IMODE((tmp_path / "other.json").stat().st_mode) == 0o666 & ~old


# --- 7 / 15. label fixes: named errors that never quote a file that is not one ------------------

@pytest.mark.parametrize("content, message", [
    (b"root:x:0:0:secret-first-line\n", r"needs a header line with `id` or `path`.*its first line has 1 other fields"),
    (b"path,new_label\na.jpg,cat\na.jpg,dog\n", r"row 3: path 'a.jpg' is fixed twice \(also row 2\)"),
    (b"path,new_label\na.jpg,\n", r"row 2: empty new_label for 'a.jpg'"),
    (b"path,new_label\na.jpg\n", r"row 2: 1 fields where the header has 2"),
    (b"path,new_label\na.jpg,cat,extra\n", r"row 2: 3 fields where the header has 2"),
    (b"path,new_label\n\xff\xfe.jpg,cat\n", r"is not UTF-8 text"),
])
def test_a_bad_label_fixes_file_is_a_named_error(tmp_path, content, message):
    from pixelscope.curate.ledger import read_label_fixes
    from pixelscope.errors import BadInput

    path = tmp_path / "fixes.csv"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message) as e:
        read_label_fixes(path)
    assert "secret" not in str(e.value) and "root:x" not in str(e.value)


def test_downloaded_torchvision_weights_load_without_pickle():
    """torch.hub.load_state_dict_from_url defaults to weights_only=False (arbitrary pickle)."""
    import ast

    from conftest import REPO

    tree = ast.parse((REPO / "pixelscope" / "embed" / "models.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") in
             ("load_state_dict_from_url", "load")]
    assert calls and all(any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in c.keywords)
                         for c in calls)


# --- 8-10. files people really have: FIFOs, devices, huge files, bytes for names, odd folders ----

def small_jpeg(path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (120, 60, 30)).save(path, quality=90)


def test_only_regular_files_of_bounded_size_are_read_and_the_run_goes_on(tmp_path):
    """A FIFO named x.jpg hung the run; a link to /dev/zero or a huge sparse file raised MemoryError
    and the whole run was lost."""
    import os

    from conftest import ingest_to
    from pixelscope.config import parse_params

    raw = tmp_path / "raw"
    small_jpeg(raw / "a" / "ok.jpg")
    os.mkfifo(raw / "a" / "fifo.jpg")
    (raw / "a" / "zero.jpg").symlink_to("/dev/zero")
    with open(raw / "a" / "huge.jpg", "wb") as fh:  # sparse: 3 GiB on paper, nothing on disk
        fh.truncate(3 << 30)
    p = parse_params({"ingest": {"workers": 1}})
    t0 = time.perf_counter()
    r = ingest_to(p, raw, tmp_path / "m.parquet")
    assert time.perf_counter() - t0 < 60
    rows = {row["path"]: row for row in pq.read_table(tmp_path / "m.parquet").to_pylist()}
    assert rows["a/ok.jpg"]["status"] == "ok"
    assert rows["a/fifo.jpg"]["reason"] == "not_a_file" and "FIFO" in rows["a/fifo.jpg"]["detail"]
    assert rows["a/zero.jpg"]["reason"] == "not_a_file" and "device" in rows["a/zero.jpg"]["detail"]
    assert rows["a/huge.jpg"]["reason"] == "too_large" and "ingest.max_file_bytes" in rows["a/huge.jpg"]["detail"]
    assert r.counts["files_seen"] == 4 == r.counts["ok"] + r.counts["errors"]
    small = parse_params({"ingest": {"workers": 1, "max_file_bytes": 100}})
    assert ingest_to(small, raw, tmp_path / "m2.parquet").counts["ok"] == 0  # the limit is the configured one


def test_a_file_name_that_is_not_utf8_is_an_error_row_not_a_crash(tmp_path):
    """A non-UTF-8 name crashed ingest (UnicodeEncodeError, no manifest)."""
    import os

    from conftest import ingest_to
    from pixelscope.config import parse_params

    raw = tmp_path / "raw"
    small_jpeg(raw / "cats" / "fine.jpg")
    small_jpeg(raw / "cats" / "other.jpg")
    os.rename(raw / "cats" / "other.jpg", os.path.join(os.fsencode(raw / "cats"), b"caf\xe9.jpg"))
    os.mkdir(os.path.join(os.fsencode(raw), b"d\xfcr"))
    small_jpeg(raw / "tmp.jpg")
    os.rename(raw / "tmp.jpg", os.path.join(os.fsencode(raw), b"d\xfcr", b"x.jpg"))
    r = ingest_to(parse_params({"ingest": {"workers": 1}}), raw, tmp_path / "m.parquet")
    rows = {row["path"]: row for row in pq.read_table(tmp_path / "m.parquet").to_pylist()}
    assert rows["cats/fine.jpg"]["status"] == "ok"
    assert rows["cats/caf\\xe9.jpg"]["reason"] == "undecodable_name"
    assert rows["d\\xfcr/x.jpg"]["reason"] == "undecodable_name"
    assert r.counts["files_seen"] == 3 and r.counts["errors"] == 2


def test_folder_symlinks_and_unreadable_folders_are_counted_not_silent(tmp_path):
    """They used to be skipped without a word. Folder symlinks are not followed (they can lead out of
    the raw folder or loop); both kinds are listed by the walk and named in the step's notes. A folder
    that cannot be listed: mode 000 for a normal user; as root (who reads anything) one whose path is
    longer than the system allows (ENAMETOOLONG), which os.walk cannot list either."""
    import os

    from pixelscope.io.discover import walk

    raw = tmp_path / "raw"
    small_jpeg(raw / "a" / "ok.jpg")
    small_jpeg(tmp_path / "outside" / "secret.jpg")
    (raw / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    if os.geteuid() != 0:
        (raw / "locked").mkdir()
        small_jpeg(raw / "locked" / "hidden.jpg")
        os.chmod(raw / "locked", 0)
        unreadable = "locked"
    else:
        fd = os.open(raw, os.O_RDONLY)
        for _ in range(17):  # 17 x 256 characters > PATH_MAX (4096)
            os.mkdir("d" * 255, dir_fd=fd)
            fd, old = os.open("d" * 255, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        os.close(fd)
        unreadable = "/".join(["d" * 255] * 16)
    try:
        w = walk(raw, [])
    finally:
        if os.geteuid() != 0:
            os.chmod(raw / "locked", 0o755)
    assert w.files == ["a/ok.jpg"] and w.linked_dirs == ["link"]
    assert [u.startswith(unreadable) for u in w.unreadable_dirs] == [True]


def test_the_ingest_notes_name_what_the_listing_left_out():
    from pixelscope.ingest.step import listing_notes
    from pixelscope.io.discover import Walk

    notes = listing_notes(Walk(["a.jpg"], 0, ["locked"], [f"link{i}" for i in range(7)]))
    assert notes[0] == "folders that could not be read (skipped): locked"
    assert notes[1].startswith("folder symlinks (not followed") and "(7 in all)" in notes[1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b
                                                          and b not in (b".", b"..")), min_size=1, max_size=6, unique=True))
def test_any_bytes_for_a_file_name_give_a_row_never_a_crash(tmp_path_factory, names):
    import os

    from pixelscope.config import parse_params
    from pixelscope.ingest.step import ingest_shard, manifest_columns
    from pixelscope.io.discover import discover
    from pixelscope.io.manifest import ManifestWriter

    raw = tmp_path_factory.mktemp("names")
    for name in names:
        with open(os.path.join(os.fsencode(raw), name), "wb") as fh:
            fh.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    p = parse_params({"ingest": {"workers": 1, "exclude": []}})
    entries, listing = discover(raw, p.ingest)
    assert len(entries) == len(names) and listing.excluded == 0
    with ManifestWriter(raw.parent / f"{raw.name}.parquet", 64, manifest_columns()) as w:
        for row in ingest_shard(entries, p.ingest, p.features):
            w.add(row)
    assert w.seen == len(names) == w.ok + w.errors


# --- 5. the pixel limit on every decode path; 6. thin images -------------------------------------

def test_a_huge_image_only_opencv_reads_is_refused_from_its_header(tmp_path):
    """A Radiance .hdr of 13,400 x 13,400 passed as ok and took 2.8 GB: the pixel limit was checked
    on Pillow's path only. Its header now says no before any decoding; the message quotes the
    configured limit."""
    import subprocess
    import sys

    from pixelscope.io.decode import header_size

    hdr = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 13400 +X 13400\n" + b"\x02\x02\x34\x58" * 64
    assert header_size(hdr) == (13400, 13400)
    assert header_size(b"PF\n13400 13400\n-1.0\n") == (13400, 13400)
    assert header_size(b"P7\nWIDTH 9000\nHEIGHT 9000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n") == (9000, 9000)
    (tmp_path / "big.hdr").write_bytes(hdr)
    code = ("import sys; from pixelscope.io.decode import decode, ImageError\n"
            "try:\n    decode(open(sys.argv[1], 'rb').read(), 256, 100_000_000)\n"
            "except ImageError as e:\n    print(e.reason, '|', e.detail)\n"
            # VmHWM: this process image's peak (ru_maxrss would keep the forking parent's)
            "print(next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.hdr")], capture_output=True, text=True)
    reason_line, rss_kb = r.stdout.strip().splitlines()
    assert reason_line.startswith("decompression_bomb |") and "ingest.max_image_pixels=100,000,000" in reason_line
    assert int(rss_kb) < 600_000  # nothing near 2 GB was allocated


def test_frame_floods_and_compressed_chunk_bombs_cost_little_and_give_a_row(tmp_path):
    """Cases that already passed, kept in the suite: a GIF of 3,000 frames and a PNG whose zTXt chunk
    inflates to 200 MB are each one row, read in seconds, without inflating the chunk."""
    import struct
    import zlib

    import psutil
    from PIL import Image

    from conftest import ingest_to
    from pixelscope.config import parse_params

    raw = tmp_path / "raw"
    raw.mkdir()
    frames = [Image.new("RGB", (8, 8), (k % 256, k // 256 * 40, 0)) for k in range(3000)]
    frames[0].save(raw / "flood.gif", save_all=True, append_images=frames[1:], duration=10)
    with Image.open(raw / "flood.gif") as im:
        assert im.n_frames == 3000  # the flood is real
    png = (raw / "ok.png")
    Image.new("RGB", (16, 16), (10, 20, 30)).save(png)
    data = png.read_bytes()
    bomb = zlib.compress(b"\0" * 200_000_000, 9)
    chunk = b"zTXt" + b"comment\0\0" + bomb
    ztxt = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    (raw / "chunk_bomb.png").write_bytes(data[:33] + ztxt + data[33:])  # after the 8-byte signature + IHDR
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    rows = ingest_to(parse_params({"ingest": {"workers": 1}}), raw, tmp_path / "m.parquet")
    assert time.perf_counter() - t0 < 60
    assert psutil.Process().memory_info().rss - before < 150 * 2**20  # never the 200 MB the chunk inflates to
    by = {r["path"]: r for r in pq.read_table(tmp_path / "m.parquet").to_pylist()}
    assert set(by) == {"flood.gif", "ok.png", "chunk_bomb.png"} and rows is not None
    assert by["flood.gif"]["status"] == "ok" and by["ok.png"]["status"] == "ok"


def test_a_yaml_tag_in_params_builds_nothing_and_runs_nothing(tmp_path):
    from pixelscope.config import load_params

    (tmp_path / "params.yaml").write_text(f"ingest: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    with pytest.raises(ConfigError):
        load_params(tmp_path / "params.yaml")
    assert not (tmp_path / "pwned").exists()


def test_pillow_bombs_quote_the_configured_limit(tmp_path):
    import io as _io

    from PIL import Image

    from pixelscope.io.decode import ImageError, decode

    buf = _io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, "PNG")
    with pytest.raises(ImageError, match=r"ingest.max_image_pixels=1,000,000") as e:
        decode(buf.getvalue(), 256, 1_000_000)
    assert e.value.reason == "decompression_bomb" and "89478485" not in e.value.detail


def test_a_thin_image_is_refused_before_the_model_resize_blows_it_up(tmp_path):
    """A 1 x 6,000 PNG (18 KB) cost 1.7 GB in preprocess: the shorter side was resized up to 256."""
    from PIL import Image

    from pixelscope.config import PreprocessConfig
    from pixelscope.embed.loader import Item, _load_with
    from pixelscope.embed.transforms import build

    Image.new("RGB", (6000, 1), (10, 200, 30)).save(tmp_path / "thin.png")
    Image.new("RGB", (300, 200), (10, 200, 30)).save(tmp_path / "fine.png")
    prep = build(PreprocessConfig())
    img, err = _load_with(Item("a" * 64, str(tmp_path / "thin.png")), prep)
    assert img is None and err["reason"] == "extreme_aspect_ratio" and "32:1" in err["detail"]
    img, err = _load_with(Item("b" * 64, str(tmp_path / "fine.png")), prep)
    assert err is None and tuple(img.shape) == (3, 224, 224)


# --- 15. config edges -----------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", r"not a text file"),
    (b"- a\n- b\n", r"the top level must be a mapping, got list"),
])
def test_a_bad_params_file_is_one_line_even_with_overrides(tmp_path, content, message):
    from pixelscope.config import load_params

    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_params(path, {"ingest": {"workers": 1}})  # a list top level was silently replaced by the overrides


def test_a_folder_as_params_file_and_the_cli_say_so_in_one_line(tmp_path):
    import subprocess
    import sys

    from pixelscope.config import load_params

    with pytest.raises(ConfigError, match="a folder, not a params file"):
        load_params(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pixelscope", "ingest", str(tmp_path), "-p", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "a folder, not a params file" in r.stderr and "Traceback" not in r.stderr


def test_a_text_override_takes_the_raw_string():
    """`--set curate.where='a' = label` crashed: the value was parsed as YAML."""
    from pixelscope.config import dotted_overrides, load_params

    o = dotted_overrides(["curate.where='a' = label", "validate.reference=null", "ingest.workers=2",
                          "curate.mlflow.enabled=true", "paths.raw=data/2026: drop"])
    assert o == {"curate": {"where": "'a' = label", "mlflow": {"enabled": True}}, "validate": {"reference": None},
                 "ingest": {"workers": 2}, "paths": {"raw": "data/2026: drop"}}
    assert load_params(None, o).curate.where == "'a' = label"
    with pytest.raises(ConfigError, match=r"override ingest.workers: .*is not a value"):
        dotted_overrides(["ingest.workers=[1"])


def test_workers_are_capped_at_the_cores_and_the_items():
    from pixelscope.io.parallel import cpu_cores, resolve_workers

    assert resolve_workers(32) == cpu_cores() and resolve_workers(32, 1) == 1 and resolve_workers(0, 0) == 1


def test_a_nan_or_infinite_confidence_is_refused_like_any_out_of_range_value(tmp_path):
    from pixelscope.errors import BadInput
    from pixelscope.io.predictions import read_predictions

    for bad in ("nan", "inf"):
        (tmp_path / "p.csv").write_text(f"path,prediction,confidence\na.jpg,cat,0.5\nb.jpg,dog,{bad}\nc.jpg,cat,\n")
        with pytest.raises(BadInput, match=r"confidence` must be in \[0, 1\]; row 2 holds"):
            read_predictions(tmp_path / "p.csv")
    (tmp_path / "p.csv").write_text("path,prediction,confidence\na.jpg,cat,0.5\nc.jpg,cat,\n")
    assert read_predictions(tmp_path / "p.csv")[1].num_rows == 2  # an empty cell is no value, still fine


# --- 14. -o never overwrites an input or a file of another kind ------------------------------------

def test_an_output_flag_cannot_overwrite_an_input_or_a_foreign_file(tmp_path):
    """`-o params.yaml` (or `profile M -o M`) overwrote an input: every later command then failed with
    a traceback."""
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pixelscope", *map(str, args), "-q", "-w", "1"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)

    raw = tmp_path / "raw"
    small_jpeg(raw / "a" / "x.jpg")
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  workers: 1\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    before = params.read_bytes()
    for target in (params, notes):
        r = cli("ingest", raw, "-o", target)
        assert r.returncode == 2 and "-o" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert params.read_bytes() == before and notes.read_text() == "my notes\n"
    assert cli("ingest", raw, "-o", tmp_path / "m.parquet").returncode == 0
    assert cli("ingest", raw, "-o", tmp_path / "m.parquet").returncode == 0  # a manifest may be rewritten
    manifest = (tmp_path / "m.parquet").read_bytes()
    r = subprocess.run([sys.executable, "-m", "pixelscope", "profile", "m.parquet", "-o", "m.parquet", "-q"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "that is an input of this run" in r.stderr
    assert (tmp_path / "m.parquet").read_bytes() == manifest


# --- 12. children die with their parent -------------------------------------------------------------

def survivors(pids: list[int], seconds: float = 15) -> list[int]:
    import psutil

    deadline = time.time() + seconds
    alive = pids
    while alive and time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_an_ingest_pool_finishes_under_both_start_methods(tmp_path, method):
    """A guard for the next try at item 12 (workers dying with their step): a first try ended healthy
    workers under a fork server, and the pool restarted them forever."""
    import os
    import subprocess
    import sys

    raw = tmp_path / "raw"
    for i in range(12):
        small_jpeg(raw / "a" / f"{i}.jpg")
    code = ("import threading, sys, time\n"
            f"if {method!r} == 'forkserver':\n    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
            "from pixelscope.cli import app\nsys.argv = ['pixelscope', 'ingest', 'raw', '-q', '-w', '2', '--json']\napp()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ})
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"ok": 12' in r.stdout


POOL_SCRIPT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from pixelscope.io.parallel import die_with_parent
method, kind, guarded = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ctx = multiprocessing.get_context(method)
init = die_with_parent if guarded else None
if kind == "executor":
    pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=init)
    jobs = [pool.submit(time.sleep, 0.5) for _ in range(200)]
else:
    pool = ctx.Pool(2, initializer=init)
    jobs = pool.map_async(time.sleep, [0.5] * 200)
time.sleep(1.5)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
@pytest.mark.parametrize("kind", ["executor", "pool"])
def test_kill_9_of_a_step_leaves_no_pool_process_behind(tmp_path, method, kind):
    """kill -9 of curate left its process pool running for minutes (the workers; under a fork server
    also the server and the resource tracker). Every pool in pixelscope starts its workers with
    die_with_parent; here a ProcessPoolExecutor (curate's exports, publish's thumbnails) and a
    multiprocessing Pool (ingest, preprocess, the demo) busy with work are killed with their
    parent. Without the initializer the executor's workers are shown to outlive it, so the check
    can fail."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    def run(guarded: bool) -> list[int]:
        proc = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT, method, kind, "1" if guarded else "0"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        kids: list[int] = []
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            kids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            assert len(kids) >= 2
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            # guarded: up to 30 s for the fork server to see its parent's pipe close and its workers to
            # follow (a CI run once saw one outlive 10 s on a loaded 2-core machine); passing runs take < 1 s
            return survivors(kids, seconds=30 if guarded else 3)
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    if kind == "executor":
        assert run(guarded=False), "an unguarded executor's workers died anyway: this check would prove nothing"
    assert run(guarded=True) == [], f"{kind} under {method}: processes outlived kill -9 of their parent"


def test_every_pool_in_pixelscope_starts_its_workers_with_die_with_parent():
    import re

    root = Path(__file__).resolve().parents[1] / "pixelscope"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"(ProcessPoolExecutor|\.Pool)\(", text):
            call = text[m.start():text.index(" as pool" if " as pool" in text[m.start():m.start() + 300] else "\n", m.start())]
            assert "initializer=" in call, f"{path.name}: {call!r} starts workers that would outlive a killed step"
    init = (root / "ingest" / "step.py").read_text()
    assert "die_with_parent()" in init and "die_with_parent()" in (root / "embed" / "loader.py").read_text()


@pytest.mark.slow
def test_sigterm_or_kill_9_of_the_dashboard_command_stops_streamlit(tmp_path):
    """SIGTERM to `pixelscope dashboard` left Streamlit serving. So did Ctrl-C when the command had
    been started with SIGINT ignored (inherited: seen in CI, where the test runner's forks carried
    SIG_IGN): both serving forever."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    from conftest import free_port, wait_healthy

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "summary.json").write_text('{"versions": {"raw": {}}, "manifest": {}}')
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
        port = free_port()
        ignore_interrupts = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == signal.SIGINT else None
        proc = subprocess.Popen([sys.executable, "-m", "pixelscope", "dashboard", str(bundle), "--port", str(port)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=ignore_interrupts)
        try:
            assert wait_healthy(f"http://127.0.0.1:{port}"), "the dashboard did not start"
            kids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            assert kids
            os.kill(proc.pid, sig)
            proc.wait(timeout=30)
            assert survivors(kids) == [], f"streamlit outlived {sig.name} of the dashboard command"
        finally:
            if proc.poll() is None:
                proc.kill()


# --- kill -9 of a stage, then a rerun: the same outputs as a run never interrupted ------------------

def tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def writing_seen(out: Path, proc, timeout: float = 120) -> bool:
    """Wait until the stage has a temporary file or folder next to or under its output, that is,
    until it is writing; False if it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:  # two levels down at most: a store's shard folder; listing more is too slow to catch a short write
            folders = [out.parent, out, *(d for d in out.iterdir() if d.is_dir())] if out.is_dir() else [out.parent]
            if any(temporary(f) for folder in folders for f in folder.iterdir()):
                return True
        except FileNotFoundError:  # a folder renamed while listed
            pass
        time.sleep(0.002)
    return False


def temporary(f: Path) -> bool:
    """A file or folder that io.atomic writes before renaming it in place."""
    return f.name.startswith((".tmp-", ".old-")) or (f.name.startswith(".") and f.name.endswith(".tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("stage, out, skip, delays", [
    # the projection carries absolute paths, which differ between the two projects
    ("preprocess", "data/processed/tensors", (), (0.0, 0.3)),
    ("embed", "data/processed/embeddings", ("projection.parquet",), (0.0, 0.3)),
    ("issues", "data/processed", ("projection.parquet",), (0.0, 0.3)),
    ("validate", "reports/validate", (), (0.0, 0.3)),
    ("curate", "data/curated", (), (0.0, 0.5, 1.5)),
    ("publish", "reports/publish", ("summary.json",), (0.0, 0.5, 1.5)),  # its summary carries the time it was published
])
def test_kill_9_mid_stage_then_a_rerun_gives_the_uninterrupted_outputs(demo_raw, tmp_path, stage, out, skip, delays):
    """A stage killed while it writes leaves the previous outputs whole (or none), and its rerun
    gives byte for byte what a run that was never interrupted gives. (Validate's data docs are
    named by the time of the run: only its results file and the docs index are compared.)"""
    import shutil
    import subprocess
    import sys

    from conftest import REPO
    from pixelscope.config import parse_params
    from pixelscope.pipeline.stages import STAGES

    def project(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(demo_raw / "raw", root / "data" / "raw")
        shutil.copytree(REPO / "expectations", root / "expectations")
        (root / "params.yaml").write_text("ingest:\n  workers: 1\ncurate:\n  workers: 2\n  shard_size: 4\n")
        p = parse_params({"ingest": {"workers": 1}, "curate": {"workers": 2, "shard_size": 4}})
        for s in STAGES[1:]:
            if s.name == stage:
                break
            s.run(p, root)
        return root

    clean, killed = project("clean"), project("killed")
    cmd = [sys.executable, "-m", "pixelscope", stage, "-q"]
    assert subprocess.run(cmd, cwd=clean, capture_output=True, timeout=600).returncode == 0
    caught = 0
    for delay in delays:  # kill at a few moments after the stage starts writing
        proc = subprocess.Popen(cmd, cwd=killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        caught += writing_seen(killed / out, proc)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        target = killed / out
        if stage in ("curate", "publish") and target.exists():  # never half a set: none yet, or a whole one
            assert (target / ("curation.parquet" if stage == "curate" else "summary.json")).exists()
        if stage == "issues":  # the four files: none, or four of one run
            from pixelscope.io.atomic import set_id_of

            names = ["issues.parquet", "issues_pairs.parquet", "neighbours.parquet", "issues.json"]
            ids = {set_id_of(target / n) if (target / n).exists() else "absent" for n in names}
            assert len(ids) == 1, f"killed after {delay} s: a mixed issues set {ids}"
    assert caught, "no kill landed while the stage was writing: this run tested nothing"
    r = subprocess.run(cmd, cwd=killed, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    if stage == "validate":
        assert (killed / out / "results.json").read_bytes() == (clean / out / "results.json").read_bytes()
    else:
        assert tree(killed / out, skip) == tree(clean / out, skip)
    assert not [f for f in (killed / out).parent.rglob("*") if temporary(f)]


# --- disk full -------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs (root only; skipped where mounting is not allowed): room for the demo's curated set
    (4 MB was too small once the fused near-duplicate rule stopped excluding look-alike demo images)."""
    import os
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_while_writing_leaves_the_previous_manifest_whole(demo_raw, small_disk):
    """ENOSPC in the middle of a write: the error says so, the previous manifest stays as it was and
    no temporary file is left behind."""
    import errno

    from conftest import ingest_to
    from pixelscope.config import parse_params

    p = parse_params({"ingest": {"workers": 1}})
    target = small_disk / "manifest.parquet"
    ingest_to(p, demo_raw / "raw", target)
    before = target.read_bytes()
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # leave a few kilobytes: less than a manifest
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    with pytest.raises(OSError) as e:
        ingest_to(p, demo_raw / "raw", target)
    assert e.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert sorted(f.name for f in small_disk.iterdir()) == ["filler", "manifest.parquet", "metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("stage, out", [("curate", "curated"), ("publish", "publish")])
def test_disk_full_during_curate_or_publish_leaves_the_previous_set_whole(demo_raw, tmp_path, small_disk, stage, out):
    """ENOSPC while curate or publish writes its set: an OSError that says so, the previous set
    byte for byte as it was, and no staging folder left on the full disk."""
    import errno
    import shutil

    from conftest import REPO
    from pixelscope.config import parse_params
    from pixelscope.pipeline.stages import STAGES

    root = tmp_path / "project"
    shutil.copytree(demo_raw / "raw", root / "data" / "raw")
    shutil.copytree(REPO / "expectations", root / "expectations")
    raw = {"ingest": {"workers": 1}, "paths": {out: str(small_disk / out)}}
    p = parse_params(raw)
    for s in STAGES[1:]:
        s.run(p, root)
        if s.name == stage:
            break
    before = tree(small_disk / out)
    assert before
    with open(small_disk / "filler", "wb", buffering=0) as fh:  # leave a few kilobytes (unbuffered: nothing left to flush)
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    changed = parse_params({**raw, "curate": {"formats": ["imagefolder", "parquet"]}}) if stage == "curate" else p
    with pytest.raises(OSError) as e:
        next(s for s in STAGES if s.name == stage).run(changed, root)
    assert e.value.errno == errno.ENOSPC
    assert tree(small_disk / out) == before
    assert sorted(f.name for f in small_disk.iterdir()) == sorted(["filler", out])
