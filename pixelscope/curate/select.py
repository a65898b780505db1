"""SQL filters and slices over the manifest joined with the issues table, evaluated by DuckDB.

The two Parquet files are loaded into an in-memory DuckDB table `images` (one row per
manifest file, the issue columns beside the manifest's); then external access is switched
off and the configuration locked, so a filter expression can read that table and nothing
else: no files, no network, no Python. A filter is parsed by DuckDB as exactly one expression
(never pasted into a query, so it cannot close a parenthesis and add a FROM or a LIMIT), must
be a condition (BOOLEAN), and gives one value per row, in manifest order. Its functions come
from an allowlist (FUNCTIONS: comparisons, arithmetic, string tests, aggregates and window
functions over `images`): none of them makes a value much larger than its inputs, so with
DuckDB's vectorised execution a filter's memory stays bounded (`repeat('x', 1.5e9)` or
`range(1e11)` are refused before they run), and a subquery may read only `images`. Each query
runs with THREADS threads, MEMORY_LIMIT for DuckDB's own buffers and a timeout (an interrupt).
A bad expression is a ConfigError that names the key, the expression and DuckDB's reason (e.g.
the unknown column and its candidates).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pixelscope.errors import BadInput, ConfigError

THREADS = 2
MEMORY_LIMIT = "1GB"  # DuckDB's buffers (joins, sorts, aggregates); one giant value is allocated outside them
TIMEOUT_S = 60.0  # per filter in curate; the dashboard passes a shorter one

# Functions a filter may call: each gives a value of about the size of its inputs (no repeat, lpad,
# range, format, replace: one call of those can allocate gigabytes outside MEMORY_LIMIT).
FUNCTIONS = frozenset("""
    + - * / // % ^ ** & | << >> @ ~~ !~~ ~~* !~~* ~~~ !~~~ || like ilike not_like not_ilike glob
    abs round floor ceil ceiling sqrt cbrt ln log log2 log10 exp pow power sign mod greatest least
    isnan isinf isfinite random hash even
    lower upper lcase ucase length len strlen char_length length_grapheme contains starts_with
    ends_with prefix suffix instr position strpos substring substr left right trim ltrim rtrim
    split_part concat concat_ws regexp_matches regexp_full_match regexp_extract levenshtein
    jaccard jaro_winkler_similarity md5 sha256
    coalesce ifnull nullif if typeof
    list_value list_contains list_has array_contains list_has_any list_has_all array_length
    list_extract array_extract list_position
    date_part datepart year month day hour minute second epoch dayofweek strftime
    count count_star avg mean sum min max median quantile quantile_cont quantile_disc mode stddev
    stddev_samp stddev_pop variance var_samp var_pop approx_count_distinct bool_and bool_or
    any_value first last arg_min arg_max corr
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
""".split())


class Images:
    """A read-only SQL view of manifest + issues, row-aligned with the manifest."""

    def __init__(self, manifest: Path, issues: Path | None, tags: list[list[str]] | None = None,
                 object_images: Path | None = None):
        """tags: per manifest row, the review tags in force (a `tags` list column for filters);
        object_images (the objects stage's per-image table): `object_count`, `object_classes` (a list)
        and `object_coverage` beside each image (0, [] and 0 for an image without objects)."""
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
        if object_images is not None and object_images.exists():
            self.db.execute("CREATE TABLE o AS SELECT path, objects AS object_count, classes AS object_classes, "
                            "coverage AS object_coverage FROM read_parquet(?)", [str(object_images)])
            if self._count("SELECT count(*) FROM o"):
                self.db.execute("CREATE TABLE joined AS SELECT images.*, coalesce(o.object_count, 0) AS object_count, "
                                "coalesce(o.object_classes, []::VARCHAR[]) AS object_classes, "
                                "coalesce(o.object_coverage, 0.0) AS object_coverage "
                                "FROM images LEFT JOIN o USING (path) ORDER BY _row")
                self.db.execute("DROP TABLE images")
                self.db.execute("ALTER TABLE joined RENAME TO images")
            self.db.execute("DROP TABLE o")
        if tags is not None:
            import pyarrow as pa

            tag_table = pa.table({"_row": pa.array(range(len(tags)), pa.int64()),
                                  "tags": pa.array(tags, pa.list_(pa.string()))})
            self.db.register("tag_table", tag_table)
            self.db.execute("CREATE TABLE tagged AS SELECT images.*, coalesce(t.tags, []::VARCHAR[]) AS tags "
                            "FROM images LEFT JOIN tag_table t USING (_row) ORDER BY _row")
            self.db.execute("DROP TABLE images")
            self.db.execute("ALTER TABLE tagged RENAME TO images")
            self.db.unregister("tag_table")
        self._lock_down()
        self.rows = self._count("SELECT count(*) FROM images")

    def _lock_down(self) -> None:
        """No files, no network, bounded threads and memory; then nothing can change that."""
        self.db.execute("SET enable_external_access = false")
        self.db.execute(f"SET threads = {THREADS}")
        self.db.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        self.db.execute("SET lock_configuration = true")

    def _count(self, sql: str) -> int:
        rows = self.db.execute(sql).fetchall()  # fetch all: an unfinished result blocks the connection
        return int(rows[0][0])

    @classmethod
    def over(cls, frame: Any) -> Images:
        """The same engine over a DataFrame already in memory (the dashboard's manifest + issues),
        scanned in place: the 100k-row manifest is not copied into DuckDB (350 MiB saved)."""
        import duckdb

        self = cls.__new__(cls)
        self.db = duckdb.connect(":memory:")
        self.db.register("frame", frame)
        self.db.execute("CREATE VIEW images AS SELECT * FROM frame")
        self.db.execute("SET preserve_insertion_order = true")  # results come in frame order (no _row to sort by)
        self._lock_down()
        self.rows = len(frame)
        self._sorted = False
        return self

    _sorted = True  # the table has _row (manifest order) to sort by

    def _columns(self, table: str) -> list[str]:
        return [r[0] for r in self.db.execute(f"DESCRIBE {table}").fetchall()]

    @property
    def columns(self) -> list[str]:
        return [c for c in self._columns("images") if c != "_row"]

    def where(self, expression: str, key: str, timeout_s: float = TIMEOUT_S) -> np.ndarray:
        """Boolean per manifest row: the expression is true (null counts as false)."""
        import duckdb

        try:
            parsed = duckdb.SQLExpression(expression)
        except duckdb.Error as e:
            raise ConfigError(f"{key}: {expression!r} is not one SQL expression: {str(e).splitlines()[0]}") from None
        self._check_calls(parsed, expression, key)
        images = self.db.table("images")
        try:
            kind = str(images.select(parsed).types[0])  # binding: unknown columns and functions fail here
            if kind not in ("BOOLEAN", '"NULL"'):
                raise ConfigError(f"{key}: {expression!r} is {kind}, not a condition: compare it (e.g. `{expression} > 0`)")
            mask = duckdb.CoalesceOperator(parsed, duckdb.ConstantExpression(False))
            rel = (images.select(mask, duckdb.ColumnExpression("_row")).sort(duckdb.ColumnExpression("_row"))
                   if self._sorted else images.select(mask))
            got = self._run(rel, timeout_s)
        except duckdb.InterruptException:
            raise ConfigError(f"{key}: {expression!r} ran longer than {timeout_s:g} s and was stopped") from None
        except duckdb.OutOfMemoryException:
            raise ConfigError(f"{key}: {expression!r} needs more than the {MEMORY_LIMIT} a filter may use") from None
        except duckdb.Error as e:
            raise ConfigError(f"{key}: {expression!r} is not a valid filter: {str(e).splitlines()[0]} "
                              f"(columns: {', '.join(self.columns)})") from None
        values = np.asarray(next(iter(got.values())), dtype=bool)
        if len(values) != self.rows:  # one value per manifest row, or the filter is wrong
            raise ConfigError(f"{key}: {expression!r} gave {len(values)} values for {self.rows} images")
        return values

    def _check_calls(self, parsed: Any, expression: str, key: str) -> None:
        """Refuse a function outside FUNCTIONS, a table function, or a table other than `images`,
        anywhere in the expression (subqueries included), before anything runs."""
        import json

        import duckdb

        try:  # DuckDB renders its own parse of the one expression; serialising parses, never runs
            tree = json.loads(self.db.execute("SELECT json_serialize_sql(?)", [f"SELECT {parsed}"]).fetchall()[0][0])
        except duckdb.Error as e:
            raise ConfigError(f"{key}: {expression!r} could not be checked: {str(e).splitlines()[0]}") from None
        if tree.get("error"):
            raise ConfigError(f"{key}: {expression!r} could not be checked: {tree.get('error_message', '')}")
        for node in _nodes(tree):
            name = str(node.get("function_name") or "").lower()
            if node.get("class") in ("FUNCTION", "WINDOW") and name not in FUNCTIONS:
                raise ConfigError(f"{key}: {expression!r} calls {name}(), which a filter may not use "
                                  "(it could allocate without bound, or reach outside the images table)")
            if node.get("type") == "TABLE_FUNCTION" or (node.get("type") == "BASE_TABLE" and (
                    node.get("table_name") != "images" or node.get("schema_name") or node.get("catalog_name"))):
                raise ConfigError(f"{key}: {expression!r} reads a table other than images")

    def _run(self, rel: Any, timeout_s: float) -> dict[str, Any]:
        """Fetch a relation, interrupted after timeout_s (DuckDB checks between vectors)."""
        timer = threading.Timer(timeout_s, self.db.interrupt)
        timer.start()
        try:
            return rel.fetchnumpy()
        finally:
            timer.cancel()


def _nodes(tree: Any) -> Any:
    """Every JSON object inside a parsed statement."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
