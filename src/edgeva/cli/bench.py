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


@bench_app.command("neuromesh")
def bench_neuromesh_cmd(
    mae: Annotated[Path, typer.Option(help="NeuroMesh MAE checkpoint (`edgeva neuromesh train`).")],
    head: Annotated[Path | None, typer.Option(help="Zero-decoding head (`edgeva neuromesh train-head`): also time the server's reconstruct-then-detect against zero decoding.")] = None,
    mask_ratio: Annotated[float, typer.Option(help="Share of tubelets dropped.")] = 0.7,
    json_out: JsonOpt = None,
) -> None:
    """NeuroMesh ms per frame at 1280x720 on one thread: camera sampler and encoding, server reconstruction (and zero decoding)."""
    from edgeva.bench.neuromesh import bench_neuromesh
    from edgeva.neuromesh import check_mask_ratio

    rows = bench_neuromesh(str(mae), head=str(head) if head else None, mask_ratio=check_mask_ratio(mask_ratio))
    print_rows(f"NeuroMesh at 1280x720, 1 thread, 10-frame chunks, mask ratio {mask_ratio}", rows, json_out)


@bench_app.command("neuromesh-f1")
def bench_neuromesh_f1_cmd(
    mae: Annotated[Path, typer.Option(help="NeuroMesh MAE checkpoint (`edgeva neuromesh train`).")],
    videos: Annotated[str, typer.Option(help="Comma-separated videos.")],
    head: Annotated[Path | None, typer.Option(help="Zero-decoding head (`edgeva neuromesh train-head`) to compare on the same chunks.")] = None,
    start: Annotated[int, typer.Option(help="First frame (e.g. past the frames the MAE and head trained on).")] = 0,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 20,
    mask_ratio: Annotated[float, typer.Option(help="Share of tubelets dropped.")] = 0.7,
    crf: Annotated[int, typer.Option(help="CRF of the kept macroblocks.")] = 30,
    json_out: JsonOpt = None,
) -> None:
    """F1 against YOLOX-Nano and server CPU ms per frame of NeuroMesh's servers on the same chunks."""
    from edgeva.bench.neuromesh import compare_servers
    from edgeva.neuromesh import check_mask_ratio

    rows = compare_servers(str(mae), [v.strip() for v in videos.split(",") if v.strip()], head=str(head) if head else None, start=start,
                           frames=frames, mask_ratio=check_mask_ratio(mask_ratio), crf=crf)
    print_rows(f"NeuroMesh servers on the same chunks (frames {start}-{start + frames - 1}, 1 thread)", rows, json_out)


@bench_app.command("oracle")
def bench_oracle_cmd(
    videos: Annotated[str, typer.Option(help="Comma-separated videos.")] = "bottle-detection,store-aisle-detection,people-detection,fruit-and-vegetable-detection",
    frames: Annotated[int, typer.Option(help="Frames per video (from the start).")] = 40,
    variants: Annotated[str | None, typer.Option(help="Comma-separated variant names (default: all; see edgeva.bench.oracle.VARIANTS).")] = None,
    uniform_crfs: Annotated[str, typer.Option(help="Uniform CRFs of the reference curve (comma-separated).")] = "22,26,30,34,38,42,46,50",
    json_out: JsonOpt = None,
) -> None:
    """The oracle AccGrad map against uniform CRF at equal F1, one method hypothesis per variant."""
    from edgeva.bench.oracle import VARIANTS, bench_oracle
    from edgeva.errors import ConfigError

    chosen = [v.strip() for v in variants.split(",")] if variants else None
    unknown = [v for v in chosen or [] if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
    try:
        crfs = [int(c) for c in uniform_crfs.split(",") if c]
    except ValueError:
        raise ConfigError(f"--uniform-crfs {uniform_crfs!r}: expected comma-separated integers") from None
    rows = bench_oracle(videos=[v for v in videos.split(",") if v], frames=frames, variants=chosen, uniform_crfs=crfs, on_step=lambda m: console.print(m, markup=False, style="dim"))
    print_rows("oracle AccGrad map vs uniform CRF at equal F1 (full resolution and frame rate)", rows, json_out)


@bench_app.command("adapt")
def bench_adapt_cmd(
    selector: Annotated[Path, typer.Option(help="AccMPEG selector checkpoint (the demo's: `edgeva demo --out DIR` writes DIR/selector.pt).")],
    videos: Annotated[str, typer.Option(help="Comma-separated videos.")] = "bottle-detection,store-aisle-detection,people-detection,fruit-and-vegetable-detection",
    frames: Annotated[int, typer.Option(help="Frames per video (from the start).")] = 100,
    adapt_every: Annotated[int, typer.Option(help="Chunks between the frames the camera uploads for adaptation.")] = 1,
    adapt_layers: Annotated[str, typer.Option(help="What the server fine-tunes and sends back: last (the head's final layer) or head.")] = "last",
    target_f1: Annotated[float, typer.Option(help="F1 at which bytes are compared (or the highest both reach).")] = 0.9,
    json_out: JsonOpt = None,
) -> None:
    """Selector precision and AccMPEG bytes at the F1 target, first vs last half of each video, with and without online adaptation."""
    from edgeva.bench.adapt import bench_adapt
    from edgeva.errors import ConfigError

    if adapt_every < 1:
        raise ConfigError(f"--adapt-every {adapt_every}: must be >= 1")
    if not selector.is_file():
        raise ConfigError(f"{selector}: no such selector checkpoint")
    try:
        rows = bench_adapt(selector=str(selector), videos=[v for v in videos.split(",") if v], frames=frames, every=adapt_every, layers=adapt_layers,
                           target_f1=target_f1, on_step=lambda m: console.print(m, markup=False, style="dim"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print_rows(f"online selector adaptation every {adapt_every} chunk(s), layers {adapt_layers}; {frames} frames; bytes include adaptation's", rows, json_out)


@bench_app.command("eval")
def bench_eval_cmd(
    videos: Annotated[str, typer.Option(help="Comma-separated videos.")] = "bottle-detection,store-aisle-detection",
    schemes: Annotated[str, typer.Option(help="Comma-separated schemes.")] = "uniform,eaar,dds",
    frames: Annotated[int, typer.Option(help="Frames per video (from the start).")] = 30,
    no_sweep: Annotated[bool, typer.Option("--no-sweep", help="Only each scheme's default configuration.")] = False,
    demo: Annotated[Path | None, typer.Option(help="Time the demo's evaluation instead (its videos, schemes and 101 frames), "
                                                   "with the selector and codec `edgeva demo --out DIR` trained in DIR.")] = None,
    selector: Annotated[Path | None, typer.Option(help="AccMPEG selector checkpoint (for accmpeg).")] = None,
    crucio: Annotated[Path | None, typer.Option(help="Crucio codec checkpoint (for crucio).")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray workers (default: one per CPU of the runtime).")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Time a Ray cluster at this address instead of a local runtime.")] = None,
    json_out: JsonOpt = None,
) -> None:
    """Wall time of one evaluation (no cache) serial vs on Ray, in one run; results must be identical."""
    from edgeva.bench.scaling import bench_eval
    from edgeva.cli.app import progress
    from edgeva.cli.demo import EVAL_VIDEOS, SCHEMES
    from edgeva.errors import ConfigError
    from edgeva.eval.config import EvalConfig
    from edgeva.executor import create_executor

    checkpoints = {k: str(p) for k, p in (("selector", selector), ("crucio", crucio)) if p}
    if demo is not None:
        checkpoints = {"selector": str(demo / "selector.pt"), "crucio": str(demo / "crucio.pt")}
        if not all(Path(p).is_file() for p in checkpoints.values()):
            raise ConfigError(f"--demo {demo}: no selector.pt and crucio.pt there (run `edgeva demo --out {demo}` first)")
        cfg = EvalConfig(videos=list(EVAL_VIDEOS), schemes=list(SCHEMES), checkpoints=checkpoints, frames=101)
    else:
        cfg = EvalConfig(videos=[v for v in videos.split(",") if v], schemes=[s for s in schemes.split(",") if s],
                         checkpoints=checkpoints, frames=frames, sweep=not no_sweep)
    runs = [("serial", create_executor("serial")), (f"ray ({ray_address or 'local'})", create_executor("ray", workers=workers, address=ray_address))]
    with progress() as bar:
        def stage(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        rows = bench_eval(cfg, runs, on_progress=stage, log=lambda m: console.print(m, markup=False, style="dim"))
    print_rows(f"edgeva eval without cache: {', '.join(cfg.videos)}; {', '.join(cfg.schemes)}; {cfg.frames} frames", rows, json_out)
