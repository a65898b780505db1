"""One rule for writing values out. As JSON (`plain`, `dumps`): NumPy scalars and arrays become
numbers and lists (`np.int64(3)` is 3, not "3"), paths, dates and anything else their string;
every JSON file, `--json` output and step result goes through here. As text (`fmt`): what the
CLI's tables and the dashboard show."""

from __future__ import annotations

import json
import math
from typing import Any


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # NumPy scalars and arrays, pandas' NumPy-backed values
        return o.tolist()
    if hasattr(o, "item"):  # other array-library scalars (torch)
        return o.item()
    return str(o)


def dumps(x: Any, **kwargs: Any) -> str:
    """json.dumps with the one default rule (keyword arguments as json.dumps takes them)."""
    return json.dumps(x, default=_default, **kwargs)


def plain(x: Any) -> Any:
    """x as plain JSON values (dicts, lists, str, int, float, bool, None)."""
    return json.loads(dumps(x))


def fmt(x: Any, digits: int = 4) -> str:
    """A value for a table cell: floats to `digits` significant digits, missing (None, NaN) as "-"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)
