"""`pixelscope similar IMAGE`: the dataset images most like one image (embedding cosine)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixelscope.cli.common import JsonOpt, ParamsOpt, SetOpt, load, out, user_errors
from pixelscope.io.values import dumps


def register(app: typer.Typer) -> None:
    @app.command("similar")
    def similar(
        image: Annotated[str, typer.Argument(help="a dataset image (id, id prefix, manifest path) or any image file")],
        k: Annotated[int, typer.Option("--k", min=1, max=1000, help="how many results")] = 10,
        bundle: Annotated[Path | None, typer.Option(
            "--bundle", help="search this bundle's compressed index (re-ranked by the project's store when it "
                             "is at hand; a bundle alone needs no project)")] = None,
        params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """More like this: rank, id, path, label and cosine similarity of the nearest dataset images
        (faiss over the embedding store, or a bundle's compressed index; a file is embedded with the
        project's model)."""
        from rich.markup import escape
        from rich.table import Table

        from pixelscope.similar import similar as search

        with user_errors():
            settings = None if bundle is not None and not params.exists() and not set_ else load(params, set_)
            found = search(settings, Path("."), image, k, bundle)
        if as_json:
            print(dumps(found))
            return
        table = Table("rank", "id", "path", "label", "similarity", box=None)
        for r in found["results"]:
            path = escape(str(r["path"])) + (f" (+{r['copies'] - 1} byte copies)" if r["copies"] > 1 else "")
            table.add_row(str(r["rank"]), r["id"][:12], path, escape(str(r["label"] or "")), f"{r['similarity']:.4f}")
        out.print(f"like {escape(found['query'])} — {found['index']}", highlight=False)
        out.print(table)
