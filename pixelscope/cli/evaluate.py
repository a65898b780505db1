"""`pixelscope evaluate`: the model's quality from its stored predictions, and where it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixelscope.cli.common import JsonOpt, ParamsOpt, SetOpt, load, out, user_errors
from pixelscope.io.values import dumps, fmt


def print_boxes(m: dict) -> None:
    """COCO metrics of the predicted boxes (pycocotools' COCOeval), per class and per slice."""
    from rich.markup import escape
    from rich.table import Table

    out.print(f"boxes on {m['images']:,} images: mAP {fmt(m['map'])}, mAP@50 {fmt(m['map50'])}, mAP@75 {fmt(m['map75'])}; "
              f"small / medium / large {fmt(m['map_small'])} / {fmt(m['map_medium'])} / {fmt(m['map_large'])}; "
              f"{m['errors']['false_positives']} false positives, {m['errors']['false_negatives']} false negatives at "
              f"IoU 0.5 ({m['errors']['file']})", highlight=False)
    table = Table("class", "AP", "AP@50", "recall@50", "objects", "predicted", box=None)
    for c in m["per_class"]:
        table.add_row(escape(c["class"]), fmt(c["ap"]), fmt(c["ap50"]), fmt(c["recall50"]), str(c["objects"]),
                      str(c["predicted"]))
    out.print(table)
    if m["slices"]:
        slices = Table("slice", "images", "mAP", "mAP@50", box=None)
        for s in m["slices"]:
            slices.add_row(escape(s["slice"]), str(s["images"]), fmt(s["map"]), fmt(s["map50"]))
        out.print(slices)


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        min_slice: Annotated[int, typer.Option(min=1, help="smallest slice listed")] = 20,
        params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Confusion matrix, per-class precision / recall / F1, accuracy, macro-F1, calibration (ECE), and the
        slices where the model is worse than on the rest with 95 % confidence (profile.predictions + labels)."""
        from rich.markup import escape
        from rich.table import Table

        from pixelscope.annotations.evaluate import evaluate_boxes
        from pixelscope.evaluate import evaluate as run
        from pixelscope.evaluate import load_frame

        with user_errors():
            p = load(params, set_)
            boxes = evaluate_boxes(p, Path("."))
            if boxes is not None and p.profile.predictions is None:  # a detector: its boxes only
                if as_json:
                    print(dumps({"boxes": boxes}))
                else:
                    print_boxes(boxes)
                return
            result = run(load_frame(p, Path(".")), min_slice)
        if as_json:
            print(dumps({**result, **({"boxes": boxes} if boxes is not None else {})}))
            return
        if boxes is not None:
            print_boxes(boxes)
        cal = result["calibration"]
        out.print(f"{result['evaluated']:,} of {result['readable']:,} readable images evaluated "
                  f"({result['coverage']:.0%}): accuracy {result['accuracy']:.3f}, macro-F1 {fmt(result['macro_f1'])}"
                  + (f", ECE {cal['ece']:.3f}" if cal else ""), highlight=False)
        table = Table("class", "precision", "recall", "F1", "support", box=None)
        for c in result["per_class"]:
            table.add_row(escape(c["class"]), fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"]))
        out.print(table)
        confusion = Table("true \\ predicted", *map(escape, result["classes"]), box=None)
        for c, row in zip(result["classes"], result["confusion"]):
            confusion.add_row(escape(c), *map(str, row))
        out.print(confusion)
        if result["slices"]:
            worst = Table("where the model fails", "images", "accuracy", "95 % interval", "rest", "z", box=None)
            for s in result["slices"][:15]:
                lo, hi = s["interval"]
                worst.add_row(escape(s["slice"]), str(s["size"]), f"{s['accuracy']:.3f}", f"{lo:.3f}-{hi:.3f}",
                              f"{s['rest_accuracy']:.3f}", f"{s['z']:.1f}")
            out.print(worst)
        else:
            out.print("no slice is worse than the rest with 95 % confidence")
