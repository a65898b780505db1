"""The model's outputs, as the user gives them: a Parquet or CSV file, one row per image.

Columns (a header is required; names are case-sensitive):
- `id` (the manifest's SHA-256 id) or `path` (relative to paths.raw, as in the manifest);
- `prediction` (or `predicted_label`, `pred_label`): the predicted class;
- `confidence` (or `score`), optional: the predicted class's probability, in [0, 1];
- `boxes`, optional (detection): the number of boxes, an integer >= 0;
- `box_area`, optional (detection): the mean box area as a share of the image, in [0, 1].

Read into the manifest's vocabulary (`pred_label`, `pred_confidence`, `pred_boxes`,
`pred_box_area`); anything wrong is a BadInput naming the file, the column and an example
row, never a silent guess.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pixelscope.errors import BadInput, InputMissing

KEYS = ("id", "path")
# manifest column <- accepted file columns (first found wins)
ALIASES = {
    "pred_label": ("prediction", "predicted_label", "pred_label"),
    "pred_confidence": ("confidence", "score", "pred_confidence"),
    "pred_boxes": ("boxes", "pred_boxes"),
    "pred_box_area": ("box_area", "pred_box_area"),
}
NUMERIC = {"pred_confidence": (0.0, 1.0), "pred_boxes": (0.0, None), "pred_box_area": (0.0, 1.0)}


def _read(path: Path) -> pa.Table:
    if not path.is_file():
        raise InputMissing(f"profile.predictions: no file {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix == ".csv":
            # every column as text first: types are checked below, with messages that name the row
            with path.open(newline="", encoding="utf-8") as fh:
                names = next(csv.reader(fh), [])
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                null_values=[""]))  # only an empty cell is no value: "nan" or "N/A" written in one is checked
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not a readable {suffix[1:]} file ({e})") from None
    raise BadInput(f"{path}: predictions must be a .parquet or .csv file")


def _numeric(path: Path, table: pa.Table, source: str, lo: float | None, hi: float | None,
             integer: bool) -> pa.Array:
    col = table.column(source).combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        text = pc.utf8_trim_whitespace(col)
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)  # an empty cell: no value
        try:
            col = pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            for row, v in enumerate(text.to_pylist()):  # the first cell that is not a number, named
                try:
                    float(v) if v is not None else None
                except ValueError:
                    raise BadInput(f"{path}: column `{source}` must be numeric; row {row + 1} holds {v!r}") from None
            raise BadInput(f"{path}: column `{source}` must be numeric") from None
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        col = pc.cast(col, pa.float64())
    else:
        raise BadInput(f"{path}: column `{source}` must be numeric, not {col.type}")
    values = col.to_numpy(zero_copy_only=False)  # nulls become NaN here: allowed (no value for that image)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = (values < lo) if lo is not None else np.zeros(len(values), bool)
        if hi is not None:
            bad |= values > hi
        if integer:
            bad |= values != np.floor(values)
    bad |= ~np.isfinite(values)  # a written nan or inf is not a number in range
    bad &= ~nulls
    if bad.any():
        row = int(np.argmax(bad))
        want = f"an integer >= {lo:g}" if integer else f"in [{lo:g}, {hi:g}]"
        raise BadInput(f"{path}: column `{source}` must be {want}; row {row + 1} holds {values[row]:g}")
    return col


def read_predictions(path: str | Path) -> tuple[str, pa.Table]:
    """(key, table): key is "id" or "path"; the table has that column, pred_label and whichever
    of pred_confidence, pred_boxes, pred_box_area the file gives, one row per image."""
    path = Path(path)
    table = _read(path)
    cols = table.column_names
    key = next((k for k in KEYS if k in cols), None)
    if key is None:
        raise BadInput(f"{path}: needs an `id` or `path` column naming each image; has {cols}")
    found = {out: next((c for c in names if c in cols), None) for out, names in ALIASES.items()}
    if found["pred_label"] is None:
        raise BadInput(f"{path}: needs a `prediction` column (or `predicted_label`); has {cols}")
    keys = pc.cast(table.column(key), pa.string())
    if keys.null_count:
        row = pc.index(pc.is_null(keys), True).as_py()
        raise BadInput(f"{path}: column `{key}` is empty in row {row + 1}")
    out = {key: keys, "pred_label": pc.cast(table.column(found["pred_label"]), pa.string())}
    for name, (lo, hi) in NUMERIC.items():
        column = found[name]
        if column is not None:
            out[name] = _numeric(path, table, column, lo, hi, integer=name == "pred_boxes")
    result = pa.table(out)
    counts = pc.value_counts(result.column(key))
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
    if repeated:
        raise BadInput(f"{path}: column `{key}` names {len(repeated)} image(s) more than once, e.g. {repeated[0]!r}")
    return key, result
