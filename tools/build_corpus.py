"""Build (or find cached) the synthetic / real pretraining corpus of a recipe and print its folder.

A maintainer tool, run from a checkout: ``python tools/build_corpus.py configs/corpus/default.yaml
--workers 2``. ``tsfm pretrain`` builds the corpus its config names by itself (through
``tsfm.data.corpus.build_corpus``, the library function this wraps); building it first only moves
the wait, e.g. onto more workers. Recipes: ``datasets/recipes/README.md``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def build(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. configs/corpus/default.yaml"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default: the cache folder of the recipe)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Build the corpus of RECIPE (cached: instant when it exists) and print its folder."""
    from tsfm.data.corpus import build_corpus
    from tsfm.data.corpus_recipe import corpus_dir, load_recipe
    from tsfm.errors import InputError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        spec = load_recipe(recipe)
        path = build_corpus(spec, out or corpus_dir(spec), num_workers=workers, progress=not quiet)
    except InputError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


if __name__ == "__main__":
    app()
