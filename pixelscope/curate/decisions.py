"""Review decisions: one append-only file of what people decided about images, and why.

`curation/decisions.jsonl` (params `curate.decisions`) is plain JSON Lines, tracked by git so that
`git diff` shows a review as lines added; the curate stage reads it (a DVC dependency) and
replays it into the ledger, so `dvc repro` gives the same training set the dashboard's Apply did.

One line per image per decision:

    {"entry": "e-5f0c...", "batch": "b-91aa...", "action": "exclude", "id": "<sha256>",
     "path": "cat/1.jpg", "value": null, "reason": "blurry cat", "author": "ana",
     "time": "2026-12-07T10:31:02Z", "where": "dashboard:images"}

Actions: `exclude` / `include` (include overrides an issue flag, a filter or a balance cap that
would leave the image out), `relabel` (value: the new label), `accept_suggestion` (value: the
label-error finder's suggestion at that time) / `reject_suggestion` (the label is verified: its
label-error flag no longer excludes it and it is not offered again), `keep` (this image represents
its duplicate group), `tag` / `untag` (value: the tag; tags are a `tags` column in filters and
slices), and `undo` (id and path empty; value: the entry or the batch it takes back).

Replay: undos cancel their targets (an undone undo restores them); then, per image, the latest
entry of each kind wins — inclusion (exclude / include), label (relabel / accept / reject), keep,
and each tag — while the whole history stays in the file. Entries are matched to manifest rows
by id (the content hash), and by path as well when byte copies share an id. An entry whose image
is no longer in the dataset is reported, never an error; a malformed line is a BadInput naming
the file and the line. Readers never rewrite the file. Writers append under an exclusive lock and
fsync, so two writers (two browser tabs, a tab and the CLI) lose nothing. Nothing in a reason or a
tag is ever executed or pasted into SQL.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pixelscope.errors import BadInput, ConfigError

ACTIONS = ("exclude", "include", "relabel", "accept_suggestion", "reject_suggestion", "keep", "tag", "untag", "undo")
KIND = {"exclude": "inclusion", "include": "inclusion", "relabel": "label", "accept_suggestion": "label",
        "reject_suggestion": "label", "keep": "keep", "tag": "tag", "untag": "tag"}
NEEDS_VALUE = ("relabel", "accept_suggestion", "tag", "untag", "undo")
FIELDS = ("entry", "batch", "action", "id", "path", "value", "reason", "author", "time", "where")
MAX_TEXT = 2000  # characters in a reason, a label or a tag


@dataclass(frozen=True)
class Decision:
    """One line of the file."""

    entry: str
    batch: str
    action: str
    id: str | None
    path: str | None
    value: str | None
    reason: str
    author: str
    time: str
    where: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(", ", ": "))

    @property
    def day(self) -> str:
        return self.time[:10]

    def credit(self) -> str:
        """`(ana, 2026-12-07)`: who and when, for the ledger."""
        return f"({self.author}, {self.day})"


def author_name(project: Path = Path(".")) -> str:
    """git's user.name in the project, else the OS user."""
    import getpass
    import subprocess

    try:
        r = subprocess.run(["git", "config", "user.name"], cwd=project, capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(name: str, value: Any, required: bool, strip: bool = False) -> str | None:
    """Text as given (a reason is stored verbatim); a label or tag loses surrounding spaces."""
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"decision: {name} must be text, not {type(value).__name__}")
    if value is not None and strip:
        value = value.strip()
    if not value:
        if required:
            raise ConfigError(f"decision: {name} is required")
        return None
    if len(value) > MAX_TEXT:
        raise ConfigError(f"decision: {name} is longer than {MAX_TEXT} characters")
    return value


def make(action: str, targets: Sequence[tuple[str, str]], *, value: str | None = None, reason: str = "",
         where: str = "cli", author: str | None = None, project: Path = Path(".")) -> list[Decision]:
    """The entries for one action over targets [(id, path)] — one per image, one batch."""
    if action not in ACTIONS or action == "undo":
        raise ConfigError(f"decision: unknown action {action!r} (one of: {', '.join(a for a in ACTIONS if a != 'undo')})")
    value = _text("label" if action in ("relabel", "accept_suggestion") else "tag" if "tag" in action else "value",
                  value, action in NEEDS_VALUE, strip=True)
    if action not in NEEDS_VALUE and value is not None:
        raise ConfigError(f"decision: {action} takes no value (got {value!r})")
    if not targets:
        raise ConfigError(f"decision: {action} names no image")
    if action == "keep" and len(targets) != 1:
        raise ConfigError(f"decision: keep names one image (the one its duplicate group keeps), not {len(targets)}")
    return _entries(action, [(i, p, value) for i, p in targets], reason, where, author, project)


def _entries(action: str, rows: Sequence[tuple[str | None, str | None, str | None]], reason: str, where: str,
             author: str | None, project: Path) -> list[Decision]:
    """One batch: an entry per (id, path, value), with one author, time and batch id."""
    reason = _text("reason", reason, False) or ""
    who, when, batch = author or author_name(project), _now(), f"b-{uuid.uuid4().hex[:12]}"
    return [Decision(entry=f"e-{uuid.uuid4().hex[:16]}", batch=batch, action=action, id=i, path=p, value=v,
                     reason=reason, author=who, time=when, where=where) for i, p, v in rows]


def undo_entries(targets: str | Sequence[str], decisions: Sequence[Decision], *, reason: str = "", where: str = "cli",
                 author: str | None = None, project: Path = Path(".")) -> list[Decision]:
    """Undos of entries or of every entry of batches (one undo line per entry), as one batch."""
    wanted = {targets} if isinstance(targets, str) else set(targets)
    hits = [d for d in decisions if d.entry in wanted or d.batch in wanted]
    missing = wanted - {d.entry for d in hits} - {d.batch for d in hits}
    if missing:
        raise ConfigError(f"decide undo: no entry or batch {sorted(missing)[0]!r} in the decisions file")
    return _entries("undo", [(None, None, d.entry) for d in hits], reason, where, author, project)


def append(path: Path, entries: Iterable[Decision]) -> int:
    """Append entries under an exclusive lock, then fsync: concurrent writers lose nothing."""
    data = "".join(d.to_json() + "\n" for d in entries).encode("utf-8")
    if not data:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return data.count(b"\n")


def read(path: Path) -> list[Decision]:
    """Every entry, in file order; [] when there is no file. Read under a shared lock (never half an
    append); a malformed line is a BadInput naming the file and the line. Never rewrites the file."""
    if not path.exists():
        return []
    if not path.is_file():
        raise BadInput(f"curate.decisions: {path} is not a file")
    with path.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        raw = fh.read()
    out: list[Decision] = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        out.append(parse_line(line, path, n))
    return out


def parse_line(line: bytes, path: Path, n: int) -> Decision:
    where = f"curate.decisions: {path} line {n}"
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadInput(f"{where}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: not a JSON object ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: not a JSON object")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise BadInput(f"{where}: no {', '.join(missing)}")
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        raise BadInput(f"{where}: unknown field {', '.join(extra)}")
    action = obj["action"]
    if action not in ACTIONS:
        raise BadInput(f"{where}: unknown action {action!r}")
    for f in FIELDS:
        if obj[f] is not None and not isinstance(obj[f], str):
            raise BadInput(f"{where}: {f} must be text or null")
    if action != "undo" and not obj["id"]:
        raise BadInput(f"{where}: {action} names no image id")
    if action in NEEDS_VALUE and not obj["value"]:
        raise BadInput(f"{where}: {action} needs a value")
    for f in ("entry", "batch", "author", "time", "where"):
        if not obj[f]:
            raise BadInput(f"{where}: empty {f}")
    obj["reason"] = obj["reason"] or ""
    return Decision(**obj)


@dataclass
class Review:
    """The decisions in force (after undos; the latest per image and kind)."""

    inclusion: dict[str, Decision] = field(default_factory=dict)  # id -> exclude / include
    label: dict[str, Decision] = field(default_factory=dict)  # id -> relabel / accept / reject
    keep: dict[str, Decision] = field(default_factory=dict)  # id -> keep
    tags: dict[str, list[str]] = field(default_factory=dict)  # id -> sorted tags
    tag_entries: dict[str, list[Decision]] = field(default_factory=dict)  # id -> the tag entries in force
    active: list[Decision] = field(default_factory=list)  # entries not undone, in file order
    undone: set[str] = field(default_factory=set)  # entry ids taken back

    def ids(self) -> set[str]:
        return set(self.inclusion) | set(self.label) | set(self.keep) | set(self.tags)

    def counts(self) -> dict[str, int]:
        """Entries in force per action (what the dataset card counts)."""
        out: dict[str, int] = {}
        for d in self.active:
            if d.action != "undo":
                out[d.action] = out.get(d.action, 0) + 1
        return dict(sorted(out.items()))


def resolve(decisions: Sequence[Decision]) -> Review:
    """Replay: undos first (newest to oldest, so an undone undo does not count), then the latest
    entry per image and kind."""
    cancelled: set[str] = set()
    for d in reversed(decisions):
        if d.entry in cancelled:
            continue
        if d.action == "undo" and d.value:
            cancelled.add(d.value)
    review = Review(undone=cancelled)
    tag_state: dict[tuple[str, str], Decision] = {}
    for d in decisions:
        if d.entry in cancelled or d.action == "undo" or d.id is None:
            if d.entry not in cancelled and d.action == "undo":
                review.active.append(d)
            continue
        review.active.append(d)
        kind = KIND[d.action]
        if kind == "inclusion":
            review.inclusion[d.id] = d
        elif kind == "label":
            review.label[d.id] = d
        elif kind == "keep":
            review.keep[d.id] = d
        else:
            tag_state[(d.id, d.value or "")] = d
    for (image, tag), d in tag_state.items():
        if d.action == "tag":
            review.tags.setdefault(image, []).append(tag)
            review.tag_entries.setdefault(image, []).append(d)
    for image in review.tags:
        review.tags[image].sort()
    return review


def load(path: Path) -> tuple[list[Decision], Review]:
    decisions = read(path)
    return decisions, resolve(decisions)


def history(path: Path) -> list[dict[str, Any]]:
    """Every entry, newest first, with `undone` (taken back by a later undo): `decide list --json`
    prints it, the Decisions page shows it."""
    decisions, review = load(path)
    return [{**asdict(d), "undone": d.entry in review.undone} for d in reversed(decisions)]


__all__ = ["ACTIONS", "Decision", "Review", "append", "author_name", "history", "load", "make", "read", "resolve",
           "undo_entries"]
