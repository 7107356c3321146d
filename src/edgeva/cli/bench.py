"""``edgeva bench ...``: print throughput tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeva.cli.app import bench_app, console, write_json

__all__ = ["print_rows", "format_value"]


def format_value(value: object) -> str:
    """Table cell text: fractions (F1, precision) with 3 decimals, other floats with 1, None and NaN as '-'."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1.5 else f"{value:.1f}"
    return str(value)


def print_rows(title: str, rows: list[dict], json_out: Path | None = None) -> None:
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(format_value(v) for v in row.values()))
    console.print(table)
    write_json(json_out, rows)


JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")]


@bench_app.command("codec")
def bench_codec_cmd(
    frames: Annotated[int, typer.Option(help="Frames to encode per configuration.")] = 60,
    json_out: JsonOpt = None,
) -> None:
    """Encode fps at 1280x720 on one thread: x264 veryfast/ultrafast, with and without a 2-level map."""
    from edgeva.bench.codec import bench_codec

    print_rows("libx264 at 1280x720, 1 thread, 10-frame chunks", bench_codec(frames=frames), json_out)


@bench_app.command("models")
def bench_models_cmd(
    iterations: Annotated[int, typer.Option(help="Timed runs per configuration.")] = 20,
    json_out: JsonOpt = None,
) -> None:
    """Detector ms per frame (median, batch 1) on 1 and 2 threads, and peak memory."""
    from edgeva.bench.models import bench_models

    print_rows("detector latency (median of runs, batch 1)", bench_models(iterations=iterations), json_out)
