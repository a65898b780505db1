"""The command line (typer): app.py assembles the command groups."""

from pixelscope.cli.app import app

__all__ = ["app"]
