"""The recipe, applied: every manifest row gets `included` or the reasons it was left out, a
final label (and the original when fixed), a split, its duplicate group and the slices it
falls in. Counts add up by construction: files = included + excluded + unreadable.

Order (each step sees only what the previous ones kept): unreadable -> outside the raw
folder -> review exclusions (curate.decisions) -> curate.exclude (issue flags; duplicates keep
their representative, which a review `keep` may change) -> curate.where -> plugin filters
(curate.filters) -> label fixes, then review labels -> balance -> splits. An image a review
included is exempt from the flags, the filters and the balance caps (not from being unreadable
or outside the raw folder); one whose label a review settled (relabelled, suggestion accepted
or rejected) is not left out as a label_error. The `review` column says which decisions changed a row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from pixelscope.config import CurateConfig, IssuesConfig
from pixelscope.curate.balance import caps, choose
from pixelscope.curate.decisions import Decision, Review
from pixelscope.curate.plugins import FILTERS, SORT_KEYS
from pixelscope.curate.select import Images
from pixelscope.curate.splits import assign
from pixelscope.errors import BadInput, ConfigError, InputMissing
from pixelscope.io.url import Url, inside
from pixelscope.issues.representative import preference

DUPLICATES = ("exact_duplicate", "near_duplicate")


def read_label_fixes(path: Path) -> dict[str, str]:
    """CSV with a header: `id` or `path`, and `label` (or `new_label`) -> {id or path: new label}.
    Every fault is an error naming the file and the row; none quotes a line that is not a
    well-formed label fix (the path could name any file)."""
    if not path.is_file():
        raise InputMissing(f"curate.label_fixes: no file {path}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            key = "id" if "id" in cols else "path" if "path" in cols else None
            new = "new_label" if "new_label" in cols else "label" if "label" in cols else None
            if key is None or new is None:
                raise BadInput(f"curate.label_fixes: {path} needs a header line with `id` or `path`, and `new_label` "
                               f"(or `label`); its first line has {len(cols)} other fields")
            fixes: dict[str, str] = {}
            first_row: dict[str, int] = {}
            for n, row in enumerate(reader, start=2):  # line 1 is the header
                if None in row or None in row.values():  # csv: extra fields under None, missing ones None
                    fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                    raise BadInput(f"curate.label_fixes: {path} row {n}: {fields} fields where the header has {len(cols)}")
                target, label = row[key].strip(), row[new].strip()
                if not target:
                    continue
                if not label:
                    raise BadInput(f"curate.label_fixes: {path} row {n}: empty {new} for {target!r}")
                if target in first_row:
                    raise BadInput(f"curate.label_fixes: {path} row {n}: {key} {target!r} is fixed twice "
                                   f"(also row {first_row[target]})")
                first_row[target], fixes[target] = n, label
    except UnicodeDecodeError as e:
        raise BadInput(f"curate.label_fixes: {path} is not UTF-8 text (byte {e.start})") from None
    return fixes


class ReviewRows:
    """The decisions in force, placed on manifest rows (by id; by path too when byte copies share an id)."""

    def __init__(self, frame: pd.DataFrame, review: Review | None):
        self.review = review or Review()
        self.n = len(frame)
        self._rows: dict[str, list[int]] = {}
        for r, i in enumerate(frame["id"].to_numpy(dtype=object)):
            self._rows.setdefault(i, []).append(r)
        self._paths = frame["path"].to_numpy(dtype=object)
        self.notes: list[list[str]] = [[] for _ in range(self.n)]
        self.stale = [d for d in self.review.active if d.id is not None and d.id not in self._rows]

    def rows(self, d: Decision) -> list[int]:
        rows = self._rows.get(d.id or "", [])
        same_path = [r for r in rows if self._paths[r] == d.path]
        return same_path if len(rows) > 1 and same_path else rows

    def mask(self, decisions: dict[str, Decision], *actions: str) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for d in decisions.values():
            if d.action in actions:
                out[self.rows(d)] = True
        return out

    def tags(self) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in range(self.n)]
        for entries in self.review.tag_entries.values():
            for d in entries:
                for r in self.rows(d):
                    out[r] = sorted({*out[r], d.value or ""})
        return out


def _say(d: Decision) -> str:
    """`: blurry cat (ana, 2026-12-07)`, or ` (ana, 2026-12-07)` without a reason."""
    return f": {d.reason} {d.credit()}" if d.reason else f" {d.credit()}"


def build_ledger(images: Images, frame: pd.DataFrame, cfg: CurateConfig, issues_cfg: IssuesConfig, raw: Path | Url,
                 vectors: dict[str, np.ndarray] | None, skipped: dict[str, str], project: Path,
                 review: ReviewRows | None = None) -> pd.DataFrame:
    """The ledger: one row per manifest row (same order)."""
    n = len(frame)
    review = review or ReviewRows(frame, None)
    reasons: list[list[str]] = [[] for _ in range(n)]
    alive = (frame["status"] == "ok").to_numpy().copy()
    for r in map(int, np.flatnonzero(~alive)):
        reasons[r].append(f"unreadable: {frame.at[r, 'reason']}")
    for r in map(int, np.flatnonzero(alive)):
        if not inside(raw, frame.at[r, "path"]):
            reasons[r].append("outside the raw folder (path or symlink escapes it)")
            alive[r] = False

    for d in review.review.inclusion.values():
        for r in review.rows(d):
            if d.action == "exclude" and alive[r]:
                reasons[r].append(f"excluded in review: {d.reason or 'no reason given'} {d.credit()}")
                alive[r] = False
            elif d.action == "include":
                review.notes[r].append(f"included in review{_say(d)}")
    protected = review.mask(review.review.inclusion, "include")  # exempt from flags, filters and caps
    label_reviewed = review.mask(review.review.label, "reject_suggestion", "accept_suggestion", "relabel")
    if review.review.keep:
        frame = _kept(frame, review)

    rep_path = _representative_paths(frame)
    for name in cfg.exclude:
        if name not in frame:
            if name in skipped:
                continue  # its finder was skipped (no labels, no splits, ...): nothing to exclude; the step notes it
            raise ConfigError(f"curate.exclude: {name!r} is not an issue column (issues.parquet has: "
                              f"{', '.join(c for c in frame.columns if frame[c].dtype == bool)})")
        flagged = frame[name].fillna(False).to_numpy(dtype=bool) & ~protected
        if name == "label_error":
            flagged = flagged & ~label_reviewed  # a reviewer settled the label: no longer a suspect
        if name in DUPLICATES:
            if "representative" not in frame:
                raise ConfigError(f"curate.exclude: {name} keeps each group's representative, which the "
                                  "near_duplicate finder marks: add it to issues.finders")
            flagged = flagged & ~frame["representative"].fillna(False).to_numpy(dtype=bool)
        for r in map(int, np.flatnonzero(flagged & alive)):
            why = f"{name}: duplicate of {rep_path.get(r, '?')}" if name in DUPLICATES else name
            reasons[r].append(why)
        alive = alive & ~flagged

    if cfg.where:
        keep = images.where(cfg.where, "curate.where") | protected
        for r in map(int, np.flatnonzero(alive & ~keep)):
            reasons[r].append(f"filter: {cfg.where}")
        alive = alive & keep
    if cfg.filters:
        FILTERS.load_plugins(cfg.plugins)
        for name in cfg.filters:
            if name not in FILTERS:
                raise ConfigError(f"curate.filters: unknown filter {name!r} (registered: {', '.join(FILTERS.names()) or 'none'}; "
                                  "a module with @curate_filter goes under curate.plugins)")
            keep = np.asarray(pd.Series(FILTERS[name](frame), index=frame.index).fillna(False), dtype=bool) | protected
            for r in map(int, np.flatnonzero(alive & ~keep)):
                reasons[r].append(f"filter: {name}")
            alive = alive & keep
    slice_hits = {name: images.where(expr, f"curate.slices.{name}") for name, expr in cfg.slices.items()}

    original = frame["label"].astype(object).where(frame["label"].notna(), None).to_numpy(dtype=object)
    label = np.array(original, dtype=object)
    fixed_by = np.array([None] * n, dtype=object)
    if cfg.accept_suggested_above is not None and "suggested_label" in frame:
        score = frame["label_error_score"].fillna(0).to_numpy()
        take = frame["label_error"].fillna(False).to_numpy(dtype=bool) & (score >= cfg.accept_suggested_above) \
            & frame["suggested_label"].notna().to_numpy() & ~label_reviewed
        label[take] = frame["suggested_label"].to_numpy(dtype=object)[take]
        fixed_by[take] = f"suggested label (score >= {cfg.accept_suggested_above:g})"
    if cfg.label_fixes is not None:
        fixes = read_label_fixes(project / cfg.label_fixes)
        ids, paths = frame["id"].to_numpy(dtype=object), frame["path"].to_numpy(dtype=object)
        unknown = sorted(set(fixes) - set(ids) - set(paths))
        if unknown:
            raise BadInput(f"curate.label_fixes: {len(unknown)} entries match no image id or path, e.g. {unknown[:3]}")
        for r in range(n):
            new = fixes.get(paths[r], fixes.get(ids[r]))
            if new is not None and new != label[r]:
                label[r], fixed_by[r] = new, f"label fix ({cfg.label_fixes})"
    for d in review.review.label.values():
        for r in review.rows(d):
            if d.action == "reject_suggestion":
                review.notes[r].append(f"label {label[r]} verified in review (suggestion rejected){_say(d)}")
            elif d.value != label[r]:
                verb = "relabelled" if d.action == "relabel" else "suggestion accepted:"
                fixed_by[r] = f"{verb} {label[r]} → {d.value} in review{_say(d)}"
                label[r] = d.value

    b = cfg.balance
    if b.max_per_class is not None or b.target_share:
        SORT_KEYS.load_plugins(cfg.plugins)
        rank = preference(frame, b.order or issues_cfg.representative, {key: SORT_KEYS[key] for key in SORT_KEYS.names()})
        labels_alive = pd.Series(label[alive], index=np.flatnonzero(alive))
        counts = labels_alive.value_counts(dropna=True).to_dict()
        cap = caps(counts, b.max_per_class, b.target_share)
        for cls, k in cap.items():
            rows = np.array([r for r in labels_alive.index[labels_alive == cls] if not protected[r]], dtype=int)
            k = max(0, k - sum(1 for r in labels_alive.index[labels_alive == cls] if protected[r]))
            if k >= len(rows):
                continue
            vecs = None
            if b.keep == "diverse" and vectors is not None and all(frame.at[r, "id"] in vectors for r in rows):
                vecs = np.stack([vectors[frame.at[r, "id"]] for r in rows])
            kept = set(choose(rows, k, b.keep, rank, vecs, b.seed).tolist())
            for r in rows:
                if r not in kept:
                    reasons[r].append(f"balance: {cls!r} capped at {k} ({b.keep})")
                    alive[r] = False

    group = frame["duplicate_group"] if "duplicate_group" in frame else pd.Series(pd.NA, index=frame.index)
    rep_id = _representative_ids(frame)
    keys = [rep_id.get(r, frame.at[r, "id"]) for r in range(n)]
    folder = [s if isinstance(s, str) else None for s in frame["split"]]
    split, how = assign(keys, folder, cfg.splits.ratios, cfg.splits.seed, cfg.splits.keep_folder_splits)
    return pd.DataFrame({
        "id": frame["id"], "path": frame["path"], "included": alive,
        "reasons": ["; ".join(r) if r else None for r in reasons],
        "first_reason": [first_reason(r[0]) if r else None for r in reasons],
        "split": [s if a else None for s, a in zip(split, alive)],
        "split_from": [h if a else None for h, a in zip(how, alive)],
        "duplicate_group": group.astype("Int64"), "group_key": keys,
        "label": label, "original_label": original, "label_fixed_by": fixed_by,
        "slices": [[name for name, hit in slice_hits.items() if hit[r]] for r in range(n)],
        "tags": review.tags(),
        "review": ["; ".join(x) if x else None for x in review.notes],
    })


def _kept(frame: pd.DataFrame, review: ReviewRows) -> pd.DataFrame:
    """The frame with each review `keep` made its duplicate group's representative (the latest keep
    in a group wins); a kept image outside any group is noted, nothing else changes."""
    if "duplicate_group" not in frame or "representative" not in frame:
        return frame
    frame = frame.copy()
    group = frame["duplicate_group"]
    rep = frame["representative"].fillna(False).astype(bool).to_numpy().copy()
    ids = frame["id"].to_numpy(dtype=object)
    winners: dict[int, tuple[int, Decision]] = {}
    for d in sorted(review.review.keep.values(), key=lambda d: d.time):  # file order breaks ties (stable sort)
        for r in review.rows(d)[:1]:
            if pd.isna(group.iat[r]):
                review.notes[r].append(f"kept in review{_say(d)}, but it is in no duplicate group")
            else:
                winners[int(group.iat[r])] = (r, d)
    for g, (r, d) in winners.items():
        members = np.flatnonzero((group == g).fillna(False).to_numpy())
        before = [ids[m][:12] for m in members if rep[m] and m != r]
        rep[members] = False
        rep[r] = True
        if before:
            review.notes[r].append(f"kept instead of {', '.join(before)} in review{_say(d)}")
    frame["representative"] = rep
    return frame


def _representative_rows(frame: pd.DataFrame) -> dict[int, int]:
    """Row -> the row of its duplicate group's representative (grouped rows only)."""
    if "duplicate_group" not in frame or "representative" not in frame:
        return {}
    g = frame["duplicate_group"]
    reps = frame.index[g.notna() & frame["representative"].fillna(False).astype(bool)]
    rep_of = {int(g[r]): int(r) for r in reps}
    return {int(r): rep_of[int(g[r])] for r in frame.index[g.notna()] if int(g[r]) in rep_of}


def _representative_paths(frame: pd.DataFrame) -> dict[int, str]:
    """Row -> "<path> (<id12>)" of the image it duplicates (the kept one)."""
    paths, ids = frame["path"].to_numpy(dtype=object), frame["id"].to_numpy(dtype=object)
    out = {r: f"{paths[rep]} ({ids[rep][:12]})" for r, rep in _representative_rows(frame).items()}
    if "exact_duplicate" in frame:  # exact copies outside near groups: the same id
        first = frame.groupby("id").head(1)
        by_id = {i: f"{p} ({i[:12]})" for i, p in zip(first["id"], first["path"])}
        for r in np.flatnonzero(frame["exact_duplicate"].fillna(False).to_numpy(dtype=bool)):
            out.setdefault(int(r), by_id[frame.at[r, "id"]])
    return out


def _representative_ids(frame: pd.DataFrame) -> dict[int, str]:
    ids = frame["id"].to_numpy(dtype=object)
    return {r: ids[rep] for r, rep in _representative_rows(frame).items()}


def first_reason(reason: str) -> str:
    """The kind of a reason, what the counts and the dashboard's tabs group by: `near_duplicate`
    for "near_duplicate: duplicate of a.jpg (...)", `filter` for "filter: width < 64"."""
    return reason.split(":")[0].strip()


def summary(ledger: pd.DataFrame) -> dict:
    """Counts that add up: files = included + excluded + unreadable; reasons; per split and label."""
    unreadable = ledger["reasons"].fillna("").str.startswith("unreadable")
    excluded = ~ledger["included"] & ~unreadable
    by_reason = {str(k): int(v) for k, v in ledger.loc[excluded, "first_reason"].value_counts().items()}
    inc = ledger[ledger["included"]]
    per_split = {s: {str(k): int(v) for k, v in g["label"].value_counts(dropna=False).sort_index().items()}
                 for s, g in inc.groupby("split")}
    return {"files": len(ledger), "included": int(ledger["included"].sum()), "excluded": int(excluded.sum()),
            "unreadable": int(unreadable.sum()), "excluded_by_first_reason": dict(sorted(by_reason.items())),
            "labels_fixed": int(ledger["label_fixed_by"].notna().sum()),
            "splits": {s: int(v) for s, v in inc["split"].value_counts().sort_index().items()},
            "split_from": {s: int(v) for s, v in inc["split_from"].value_counts().items()},
            "per_split_label": per_split}

