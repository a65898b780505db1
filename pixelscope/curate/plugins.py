"""Plugin filters and sort keys for the recipe: decorated functions in a user's module, listed
in params like features and finders.

    # my_project/curation.py
    from pixelscope.curate.plugins import curate_filter, sort_key

    @curate_filter("landscape")
    def landscape(frame):              # frame: manifest + issue columns, one row per file
        return frame["width"] > frame["height"]          # True = keep

    @sort_key("crisp")
    def crisp(frame):                  # smaller = better; "-crisp" in a key list flips it
        return -frame["sharpness"] / frame["megapixels"]

    curate: {plugins: [my_project.curation], filters: [landscape], balance: {order: [crisp, path]}}
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from pixelscope.registry import Registry

Filter = Callable[[pd.DataFrame], "pd.Series"]
SortKey = Callable[[pd.DataFrame], "pd.Series"]
FILTERS: Registry[Filter] = Registry("curate filter", plugins_key="curate.plugins")
SORT_KEYS: Registry[SortKey] = Registry("sort key", plugins_key="curate.plugins")


def curate_filter(name: str, *, replace: bool = False) -> Callable[[Filter], Filter]:
    """Register a filter: frame -> bool per row (True = keep). A name is taken once."""
    def register(fn: Filter) -> Filter:
        return FILTERS.register(name, fn, replace=replace)
    return register


def sort_key(name: str, *, replace: bool = False) -> Callable[[SortKey], SortKey]:
    """Register a sort key: frame -> number per row (smaller = better). A name is taken once."""
    def register(fn: SortKey) -> SortKey:
        return SORT_KEYS.register(name, fn, replace=replace)
    return register
