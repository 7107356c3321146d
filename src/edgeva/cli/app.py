"""The Typer application object and shared console helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from edgeva.errors import EdgevaError

__all__ = ["app", "bench_app", "console", "err_console", "progress", "track", "write_json", "split_list", "writable"]

app = typer.Typer(
    name="edgeva",
    help="Edge video analytics: DNN-aware video encoding, distributed inference, shared-stem apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Throughput benchmarks (figures, not tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Piped or logged output has no terminal width: rich would fold tables to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)

T = TypeVar("T")


def split_list(values: list[str]) -> list[str]:
    """An option given repeatedly and/or comma-separated (``--videos a,b --videos c``) as one list."""
    return [v for spec in values for v in spec.split(",") if v]


def writable(out: Path) -> Path:
    """``out``, once its folder exists (else one error line naming it)."""
    if not out.parent.is_dir():
        raise EdgevaError(f"{out}: cannot write (folder {out.parent} does not exist)")
    return out


def progress() -> Progress:
    """A progress display for long jobs (on stderr, so JSON on stdout stays clean)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def write_json(path: Path | None, payload: object) -> None:
    """Write ``payload`` as JSON (nothing when ``path`` is None); an unwritable path is one error line."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, default=str))
    except OSError as exc:
        raise EdgevaError(f"{path}: cannot write ({exc.strerror})") from None


def stage_bars(bar):
    """An ``on_stage`` callback drawing one progress bar per training stage."""

    def stage(description: str, total: int):
        task = bar.add_task(description, total=total)
        return lambda: bar.advance(task)

    return stage


def reuse_or_train(path: Path, what: str, *, wanted: tuple, trained_with, train, save, retrain: bool = False) -> Path:
    """The checkpoint at ``path`` if ``trained_with(path)`` equals ``wanted`` (what determines
    it: videos, frames, steps, seed), else ``save(train(on_stage), path)`` (the demo's cache).
    A checkpoint that does not load is trained again."""
    if path.exists() and not retrain:
        try:
            if trained_with(path) == wanted:
                console.print(f"reusing the {what} in {path} (pass --retrain to train again)")
                return path
        except EdgevaError:
            pass  # a damaged cache is retrained
    console.print(f"training the {what} on {', '.join(wanted[0])}")
    with progress() as bar:
        save(train(stage_bars(bar)), path)
    return path
