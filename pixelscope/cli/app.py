"""The `pixelscope` command line: thin over the step functions and the core.

    pixelscope <stage>     one command per pipeline stage (pixelscope/pipeline/stages.py)
    pixelscope show | merge | drift      profile files
    pixelscope suite init | reference set  the validate step's inputs
    pixelscope demo-data   the built-in demo images
    pixelscope dashboard [BUNDLE]  the Streamlit dashboard on 127.0.0.1
    pixelscope diff A B    what changed between two dataset versions (revs, bundles, files)
    pixelscope history     one row per dataset version: counts, quantiles, drift (reports/history/)
    pixelscope monitor DROP  a new data drop against the reference, rolled into its window
    pixelscope decide ...  review decisions (exclude, relabel, keep, tag, undo, list) that curate applies
    pixelscope similar IMAGE  the dataset images most like an image (faiss over the embeddings)
    pixelscope evaluate    the model's predictions: confusion, per-class F1, calibration, failing slices
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pixelscope.cli import dashboard, decide, evaluate, profiles, similar, stages, suites, versions
from pixelscope.cli.common import out

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="pixelscope: ingest, profile, validate and inspect image datasets.")
stages.register(app)
profiles.register(app)
suites.register(app)
dashboard.register(app)
versions.register(app)
decide.register(app)
similar.register(app)
evaluate.register(app)


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="where the reference images go")] = Path("data/raw"),
    new_batch: Annotated[Path, typer.Option(help="where the shifted new batch goes")] = Path("data/new_batch"),
    per_class: Annotated[int, typer.Option(min=1, help="images per class")] = 50,
    force: Annotated[bool, typer.Option(help="rebuild even when the folder has files")] = False,
    showcase: Annotated[bool, typer.Option(help="the review showcase: 5 classes in new surroundings, "
                                                "train/val/test, planted faults, predictions.csv")] = False,
) -> None:
    """Build the demo dataset from real photos that scikit-image ships (no downloads). With --showcase:
    five classes in two sources and train / val / test folders, with planted copies, leaks, label
    flips, dark and blurry images and broken files (listed in demo_planted.json), and a model's
    predictions.csv (its validation fails on the planted leaks, by design)."""
    from pixelscope.demo import build_demo, build_showcase

    if out_dir.exists() and any(out_dir.rglob("*.jpg")) and not force:
        out.print(f"demo data already in {out_dir} (use --force to rebuild)")
        return
    if not showcase:
        made = build_demo(out_dir, new_batch, per_class=per_class)
        out.print(f"demo data: {made['images']} files in {out_dir} and {new_batch}")
        return
    info = build_showcase(out_dir, new_batch, per_class=min(per_class, 40))
    planted = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in info["planted"].items())
    out.print(f"demo data: {info['images']} files in {out_dir} (planted: {planted}; "
              f"{out_dir.parent / 'demo_planted.json'}), {info['new_batch']} in {new_batch}, "
              f"a model's predictions in {out_dir.parent / 'predictions.csv'}", soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
