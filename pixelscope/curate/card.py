"""The dataset card (data/curated/README.md), Hugging Face format: a YAML header that the Hub and
`huggingface_hub.DatasetCard` read (pretty_name, license, task_categories, size_categories,
dataset_info with class names and per-split counts and bytes, configs with data_files), and
a body written from the run: source version, recipe, what was removed and why, the duplicate
method and the leakage check, class counts per split, a profile summary, validation."""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def leaks(ledger: pd.DataFrame) -> dict[str, int]:
    """Ids and duplicate groups of the curated set found in more than one split (should be 0). A
    group is its group_key (the representative's id; an ungrouped image's own id)."""
    inc = ledger[ledger["included"]]
    ids = int((inc.groupby("id")["split"].nunique() > 1).sum())
    groups = int((inc.groupby("group_key")["split"].nunique() > 1).sum())
    return {"ids_in_two_splits": ids, "groups_in_two_splits": groups}


def render(*, ledger: pd.DataFrame, counts: dict[str, Any], classes: list[str], split_bytes: dict[str, int],
           recipe: dict[str, Any], version: dict[str, Any], issues: dict[str, Any] | None,
           validation: dict[str, Any] | None, curated_check: dict[str, Any], profile: dict[str, Any], formats: list[str],
           pretty_name: str, license_: str, objects: dict[str, dict[str, int]] | None = None) -> str:
    """The dataset card; `objects` (split -> object class -> kept objects) adds the detection parts."""
    splits = sorted(counts["splits"])
    header: dict[str, Any] = {
        "pretty_name": pretty_name,
        "license": license_,
        "task_categories": ["image-classification"],
        "size_categories": [size_category(counts["included"])],
        "dataset_info": {
            "features": [{"name": "image", "dtype": "image"}, {"name": "id", "dtype": "string"},
                         {"name": "label", "dtype": {"class_label": {"names": {str(i): c for i, c in
                                                                               enumerate(classes)}}}}],
            "splits": [{"name": s, "num_examples": int(counts["splits"][s]), "num_bytes": int(split_bytes.get(s, 0))}
                       for s in splits],
        },
    }
    if objects is not None:
        object_classes = sorted({c for per in objects.values() for c in per})
        header["task_categories"] = ["object-detection"]
        header["dataset_info"]["features"].append({"name": "objects", "sequence": [
            {"name": "bbox", "sequence": "float32", "length": 4},
            {"name": "category", "dtype": {"class_label": {"names": dict(enumerate(object_classes))}}}]})
    if "parquet" in formats:
        header["configs"] = [{"config_name": "default", "data_files": [
            {"split": s, "path": f"parquet/data/{s}-*.parquet"} for s in splits]}]
    leak = leaks(ledger)
    lines = [f"# {pretty_name}", "",
             f"Curated by pixelscope from the raw folder `{version.get('path')}` "
             f"(DVC md5 `{version.get('md5') or 'not versioned'}`, git `{version.get('git_commit') or 'none'}`"
             f"{', uncommitted changes' if version.get('git_dirty') else ''}).", "",
             "## What is in it", "",
             f"{counts['included']:,} images of {counts['files']:,} files: {counts['excluded']:,} excluded by the "
             f"recipe, {counts['unreadable']:,} unreadable.", "",
             "| split | " + " | ".join(classes) + " | total |", "|---|" + "---:|" * (len(classes) + 1)]
    for s in splits:
        per = counts["per_split_label"].get(s, {})
        lines.append(f"| {s} | " + " | ".join(str(per.get(c, 0)) for c in classes) + f" | {counts['splits'][s]} |")
    if objects is not None:
        object_classes = sorted({c for per in objects.values() for c in per})
        lines += ["", "## Objects", "", "Kept annotated objects per split and class (boxes as COCO x, y, w, h in pixels).",
                  "", "| split | " + " | ".join(object_classes) + " | total |", "|---|" + "---:|" * (len(object_classes) + 1)]
        for s in splits:
            per = objects.get(s, {})
            lines.append(f"| {s} | " + " | ".join(str(per.get(c, 0)) for c in object_classes) + f" | {sum(per.values())} |")
    lines += ["", "## What was removed and why", "", "| reason (first) | images |", "|---|---:|"]
    quality = (issues or {}).get("finders", {}).get("quality", {}).get("thresholds", {})
    lines += [f"| {why} | {n} |" for why, n in counts["excluded_by_first_reason"].items()] or ["| (none) | 0 |"]
    used = [why for why in counts["excluded_by_first_reason"] if why in quality]
    if used:
        lines += ["", "Thresholds of the quality flags that removed images: " + "; ".join(
            f"{why} {_threshold(quality[why])} ({quality[why].get('source')})" for why in used) + "."]
    if counts["labels_fixed"]:
        lines += ["", f"{counts['labels_fixed']} labels were changed (the ledger keeps the original)."]
    if counts.get("decisions"):
        lines += ["", "## Review decisions", "", "Decisions in force (`curate.decisions`, the ledger's `review` column "
                  "says which changed each image):", "", "| action | entries |", "|---|---:|"]
        lines += [f"| {action} | {n} |" for action, n in counts["decisions"].items()]
        if counts.get("decisions_stale"):
            lines += ["", f"{counts['decisions_stale']} decisions name images no longer in the dataset (not applied)."]
    lines += ["", "## How", "", "Recipe (`params.yaml` `curate:`):", "", "```yaml",
              yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", ""]
    if issues is not None:
        near = issues.get("finders", {}).get("near_duplicate", {})
        th = near.get("thresholds", {})
        if near.get("rule") == "fused":
            how = (f"pairs within {th.get('candidate_max_hamming')} pHash bits or at embedding cosine ≥ "
                   f"{th.get('candidate_min_cosine')}, kept at P(duplicate) ≥ {th.get('min_probability')} under a model "
                   "of Hamming distance, cosine and image size (`issues.near_duplicate_model`)")
        else:
            how = (f"pHash Hamming ≤ {th.get('hash_max_distance')} bits or embedding cosine ≥ "
                   f"{th.get('embedding_min_cosine')}")
        lines += [f"Duplicates: exact by bytes and decoded pixels; near-duplicates by {how} "
                  f"({near.get('index', 'no embeddings')}); groups never chain and keep one representative.", ""]
    lines += [f"Leakage check of this set: {leak['ids_in_two_splits']} image ids and {leak['groups_in_two_splits']} "
              f"duplicate groups in more than one split"
              + (" (zero leaks)." if not any(leak.values()) else " — LEAKS, see curation.parquet."), "",
              "Splits: " + (", ".join(f"{k}: {v}" for k, v in counts["split_from"].items())) +
              " (folder = the raw folder's own split; hash = stable, from the duplicate group's representative id).",
              "", "## Profile of the curated set", ""]
    lines += [f"- {k}: {v}" for k, v in profile.items()]
    lines += ["", "## Validation", ""]
    if validation is None:
        lines.append("Source data: the validate step has not run on it.")
    else:
        lines.append("Source data: " + ("passed the validate step." if validation.get("success") else
                                        "failed the validate step: " + "; ".join(validation.get("failed", [])[:10])))
    lines.append(f"Curated set: {'passed' if curated_check['success'] else 'FAILED'} the quality suite "
                 f"({curated_check['expectations']} expectations"
                 + (f"; failed: {', '.join(curated_check['failed'])}" if curated_check["failed"] else "") + ").")
    lines += ["", "## Files", "", "- `curation.parquet`: every file of the source, included or why not.",
              *[f"- `{f}/`" for f in formats], ""]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(lines)


def _threshold(t: dict[str, Any]) -> str:
    if "value" in t:
        return f"{t['value']:.4g}"
    return f"outside [{t.get('low', float('nan')):.4g}, {t.get('high', float('nan')):.4g}]"


def profile_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """A few medians and ranges of the included images (from the manifest's features)."""
    out: dict[str, Any] = {"images": len(frame)}
    if len(frame):
        w, h = frame["width"], frame["height"]
        out["size"] = f"{int(w.min())}x{int(h.min())} to {int(w.max())}x{int(h.max())} (median {int(w.median())}x" \
                      f"{int(h.median())})"
        for col in ("brightness_mean", "sharpness", "entropy"):
            if col in frame and frame[col].notna().any():
                out[f"{col} median"] = round(float(frame[col].median()), 3)
        out["formats"] = ", ".join(f"{k} {v}" for k, v in frame["format"].value_counts().items())
    return out
