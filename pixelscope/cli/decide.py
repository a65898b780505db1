"""`pixelscope decide`: record review decisions (the same file and API as the dashboard's actions).

    pixelscope decide exclude --where "brightness_mean < 0.1" --reason "too dark to label"
    pixelscope decide relabel --id 3b27cf93fb1e --label dog --reason "it is a dog"
    pixelscope decide keep --path cat/cat_00004.jpg
    pixelscope decide tag --where "label = 'cat'" --tag review-me
    pixelscope decide list [--json]
    pixelscope decide undo ENTRY|BATCH

`pixelscope curate` (or `dvc repro`) then applies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixelscope.cli.common import JsonOpt, ParamsOpt, SetOpt, load, out, user_errors
from pixelscope.io.values import dumps

decide_app = typer.Typer(no_args_is_help=True, help="Record review decisions (exclude, include, relabel, accept, "
                                                    "reject, keep, tag, untag, undo, list); `pixelscope curate` applies them.")

IdOpt = Annotated[Optional[list[str]], typer.Option("--id", help="image id or a prefix of 6+ characters (repeatable)")]
PathOpt = Annotated[Optional[list[str]], typer.Option("--path", help="manifest path (repeatable)")]
WhereOpt = Annotated[Optional[str], typer.Option("--where", help="SQL filter over manifest + issues + tags")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (free text, stored verbatim)")]


def _decide(action: str, ids: list[str] | None, paths: list[str] | None, where: str | None, reason: str,
            value: str | None, params: Path, set_: list[str] | None, as_json: bool) -> None:
    from pixelscope.curate import review
    from pixelscope.errors import ConfigError

    with user_errors():
        p, project = load(params, set_), Path(".")
        frame = review.images_frame(p, project)
        rows = review.pick(p, project, ids=ids or [], paths=paths or [], where=where, frame=frame)
        if not rows:
            raise ConfigError(f"decide {action}: no image picked (give --id, --path or a --where that matches)")
        values = review.suggestions_of(frame, rows) if action == "accept_suggestion" else None
        entries = review.record(p, project, action, review.targets_of(frame, rows), value=value, values=values,
                                reason=reason, where="cli")
    if as_json:
        print(dumps([e.__dict__ for e in entries]))
    else:
        what = f" ({value})" if value else ""
        out.print(f"recorded {len(entries)} {action}{what} decision{'s' if len(entries) != 1 else ''} "
                  f"(batch {entries[0].batch}) in {review.decisions_file(p, project)}; `pixelscope curate` applies them",
                  soft_wrap=True, highlight=False)


@decide_app.command("exclude")
def exclude(ids: IdOpt = None, paths: PathOpt = None, where: WhereOpt = None, reason: ReasonOpt = "",
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Leave these images out of the curated set (overrides any recipe that keeps them)."""
    _decide("exclude", ids, paths, where, reason, None, params, set_, as_json)


@decide_app.command("include")
def include(ids: IdOpt = None, paths: PathOpt = None, where: WhereOpt = None, reason: ReasonOpt = "",
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Keep these images although an issue flag, a filter or a balance cap would leave them out."""
    _decide("include", ids, paths, where, reason, None, params, set_, as_json)


@decide_app.command("accept")
def accept(ids: IdOpt = None, paths: PathOpt = None, where: WhereOpt = None, reason: ReasonOpt = "",
           params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Take the label-error finder's suggested label for these images."""
    _decide("accept_suggestion", ids, paths, where, reason, None, params, set_, as_json)


@decide_app.command("reject")
def reject(ids: IdOpt = None, paths: PathOpt = None, where: WhereOpt = None, reason: ReasonOpt = "",
           params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Keep these images' labels: verified, no longer left out as label errors or offered again."""
    _decide("reject_suggestion", ids, paths, where, reason, None, params, set_, as_json)


@decide_app.command("relabel")
def relabel(label: Annotated[str, typer.Option("--label", help="the new label")], ids: IdOpt = None,
            paths: PathOpt = None, where: WhereOpt = None, reason: ReasonOpt = "",
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Give these images a new label (the raw files and the manifest stay as they are)."""
    _decide("relabel", ids, paths, where, reason, label, params, set_, as_json)


@decide_app.command("keep")
def keep(ids: IdOpt = None, paths: PathOpt = None, reason: ReasonOpt = "",
         params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Make this one image the representative its duplicate group keeps."""
    _decide("keep", ids, paths, None, reason, None, params, set_, as_json)


@decide_app.command("tag")
def tag(tag_: Annotated[str, typer.Option("--tag", help="the tag")], ids: IdOpt = None, paths: PathOpt = None,
        where: WhereOpt = None, reason: ReasonOpt = "", params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Tag these images (filters and slices see `list_contains(tags, 'TAG')`)."""
    _decide("tag", ids, paths, where, reason, tag_, params, set_, as_json)


@decide_app.command("untag")
def untag(tag_: Annotated[str, typer.Option("--tag", help="the tag")], ids: IdOpt = None, paths: PathOpt = None,
          where: WhereOpt = None, reason: ReasonOpt = "", params: ParamsOpt = Path("params.yaml"),
          set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Take a tag off these images."""
    _decide("untag", ids, paths, where, reason, tag_, params, set_, as_json)


@decide_app.command("undo")
def undo(entry: Annotated[str, typer.Argument(help="an entry (e-...) or a whole batch (b-...)")],
         reason: ReasonOpt = "", params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
         as_json: JsonOpt = False) -> None:
    """Take back an earlier decision (the history keeps both)."""
    from pixelscope.curate import review

    with user_errors():
        p = load(params, set_)
        entries = review.undo(p, Path("."), entry, reason=reason)
    if as_json:
        print(dumps([e.__dict__ for e in entries]))
    else:
        out.print(f"undid {len(entries)} entr{'ies' if len(entries) != 1 else 'y'} of {entry}; "
                  "`pixelscope curate` applies it", highlight=False)


@decide_app.command("list")
def list_(action: Annotated[Optional[str], typer.Option("--action", help="only this action")] = None,
          author: Annotated[Optional[str], typer.Option("--author", help="only this author")] = None,
          limit: Annotated[int, typer.Option(help="rows shown (not with --json)")] = 50,
          params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Every decision, newest first (`undone` marks those taken back)."""
    from rich.markup import escape
    from rich.table import Table

    from pixelscope.curate import review

    with user_errors():
        p = load(params, set_)
        rows = [r for r in review.listing(p, Path("."))
                if (action is None or r["action"] == action) and (author is None or r["author"] == author)]
    if as_json:
        print(dumps(rows))
        return
    table = Table("entry", "time", "author", "action", "image", "value", "reason", "", box=None)
    for r in rows[:limit]:
        image = f"{(r['id'] or '')[:12]} {r['path'] or ''}".strip() if r["action"] != "undo" else ""
        table.add_row(r["entry"], r["time"], escape(r["author"]), r["action"], escape(image),
                      escape(r["value"] or ""), escape(r["reason"]), "undone" if r["undone"] else "")
    out.print(table)
    out.print(f"{len(rows)} entries" + (f" ({len(rows) - limit} more: --limit)" if len(rows) > limit else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(decide_app, name="decide")
