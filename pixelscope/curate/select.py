"""SQL filters and slices over the manifest joined with the issues table, evaluated by DuckDB.

The two Parquet files are loaded into an in-memory DuckDB table `images` (one row per
manifest file, the issue columns beside the manifest's); then external access is switched
off and the configuration locked, so a filter expression can read that table and nothing
else: no files, no network, no Python. A bad expression is a ConfigError that names the
key, the expression and DuckDB's reason (e.g. the unknown column and its candidates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pixelscope.errors import BadInput, ConfigError


class Images:
    """A read-only SQL view of manifest + issues, row-aligned with the manifest."""

    def __init__(self, manifest: Path, issues: Path | None):
        import duckdb

        self.db = duckdb.connect(":memory:")
        self.db.execute("CREATE TABLE m AS SELECT row_number() OVER () - 1 AS _row, * FROM read_parquet(?)",
                        [str(manifest)])
        if issues is not None and issues.exists():
            self.db.execute("CREATE TABLE i AS SELECT row_number() OVER () - 1 AS _row, * FROM read_parquet(?)",
                            [str(issues)])
            mismatch = self._count("SELECT count(*) FROM m FULL JOIN i USING (_row) WHERE m.path IS DISTINCT FROM i.path")
            if mismatch:
                raise BadInput(f"{issues} does not describe {manifest} (rerun `pixelscope issues`)")
            keep = [c for c in self._columns("i") if c not in ("_row", "id", "path", "label", "split", "status")]
            cols = ", ".join(f'i."{c}"' for c in keep)
            self.db.execute(f"CREATE TABLE images AS SELECT m.*{', ' + cols if cols else ''} FROM m JOIN i USING (_row) "
                            "ORDER BY _row")
        else:
            self.db.execute("CREATE TABLE images AS SELECT * FROM m ORDER BY _row")
        self.db.execute("DROP TABLE m")
        self.db.execute("DROP TABLE IF EXISTS i")
        self.db.execute("SET enable_external_access = false")
        self.db.execute("SET lock_configuration = true")
        self.rows = self._count("SELECT count(*) FROM images")

    def _count(self, sql: str) -> int:
        row = self.db.execute(sql).fetchone()
        assert row is not None  # a count(*) always returns one row
        return int(row[0])

    @classmethod
    def over(cls, frame: Any) -> Images:
        """The same engine over a DataFrame already in memory (the dashboard's manifest + issues),
        scanned in place: the 100k-row manifest is not copied into DuckDB (350 MiB saved)."""
        import duckdb

        self = cls.__new__(cls)
        self.db = duckdb.connect(":memory:")
        self.db.register("frame", frame)
        self.db.execute("CREATE VIEW images AS SELECT * FROM frame")
        self.db.execute("SET enable_external_access = false")
        self.db.execute("SET preserve_insertion_order = true")  # results come in frame order (no _row to sort by)
        self.db.execute("SET lock_configuration = true")
        self.rows = len(frame)
        self._order = ""
        return self

    _order = "ORDER BY _row"

    def _columns(self, table: str) -> list[str]:
        return [r[0] for r in self.db.execute(f"DESCRIBE {table}").fetchall()]

    @property
    def columns(self) -> list[str]:
        return [c for c in self._columns("images") if c != "_row"]

    def where(self, expression: str, key: str) -> np.ndarray:
        """Boolean per manifest row: the expression is true (null counts as false)."""
        import duckdb

        if ";" in expression:
            raise ConfigError(f"{key}: {expression!r}: one expression, no ';'")
        try:
            got = self.db.execute(f"SELECT coalesce(CAST(({expression}) AS BOOLEAN), false) FROM images "
                                  f"{self._order}").fetchnumpy()
        except duckdb.Error as e:
            raise ConfigError(f"{key}: {expression!r} is not a valid filter: {str(e).splitlines()[0]} "
                              f"(columns: {', '.join(self.columns)})") from None
        return np.asarray(next(iter(got.values())), dtype=bool)
