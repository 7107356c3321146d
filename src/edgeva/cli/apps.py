"""``edgeva apps train | run | eval`` and ``edgeva bench apps``: Mainstream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeva.cli.app import app, bench_app, console, err_console, progress, write_json
from edgeva.errors import ConfigError, EdgevaError

apps_app = typer.Typer(help="Mainstream: apps sharing a base DNN, scheduled within a compute budget.",
                       no_args_is_help=True)
app.add_typer(apps_app, name="apps")

UnitsOpt = Annotated[str, typer.Option(help="Event-length units of the accuracy model: stream or published.")]
FractionalOpt = Annotated[bool, typer.Option(help="Let every scheduler run apps below 1 fps (published: only no-sharing).")]


def _units(units: str) -> str:
    if units not in ("stream", "published"):
        raise ConfigError(f"--units {units!r}: expected stream or published")
    return units


def _bars():
    """A progress display that leaves nothing behind, so an error stays one line on stderr."""
    from rich.progress import Progress

    shown = progress()
    return Progress(*shown.columns, console=err_console, transient=True, disable=not err_console.is_terminal)


def _check_video(video: str) -> str:
    """The resolved path of ``video``, after decoding its first frame (bad input fails early)."""
    from edgeva import assets
    from edgeva.video import open_video

    path = assets.resolve_video(video)
    for _ in open_video(path, limit=1):
        break
    return path


def _budgets(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--budgets {text!r}: expected numbers separated by commas") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--budgets {text!r}: expected positive numbers")
    return values


@apps_app.command("train")
def train_cmd(
    videos: Annotated[list[str], typer.Option("--videos", help="Videos (files or sample names); repeat or comma-separate.")],
    apps: Annotated[str, typer.Option(help="Apps, e.g. person>=1,car>=1,bottle>=3 (COCO classes).")],
    out: Annotated[Path, typer.Option(help="Apps folder to write.")],
    fps: Annotated[int, typer.Option(help="Stream rate F every video is resampled to.")] = 5,
    frames: Annotated[int | None, typer.Option(help="At most this many stream frames per video.")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per app and freeze point.")] = 4,
    max_train_frames: Annotated[int, typer.Option(help="Subsample training frames to at most this many.")] = 600,
) -> None:
    """Label the videos with YOLOX-Nano, train every app at every freeze point, measure p, q, L, e, c."""
    from edgeva.mainstream.apps import parse_apps
    from edgeva.mainstream.train import TrainOptions, train_apps

    specs = parse_apps(apps)
    names = [v.strip() for item in videos for v in item.split(",") if v.strip()]
    if epochs < 1 or max_train_frames < 8:
        raise ConfigError("--epochs must be >= 1 and --max-train-frames >= 8")
    if fps < 1:
        raise ConfigError(f"--fps {fps}: must be at least 1")
    for name in names:
        _check_video(name)
    opts = TrainOptions(stream_fps=fps, frames_per_video=frames, epochs=epochs, max_train_frames=max_train_frames)
    with _bars() as bar:
        def tick(description: str, total: int):
            task = bar.add_task(description, total=total or None)
            return lambda: bar.advance(task)

        manifest = train_apps(specs, names, out, opts, progress=tick)
    points = manifest["base"]["freeze_points"]
    console.print("per app: L (s), e, c; then p/q at " + ", ".join(points.values()))
    for a in manifest["apps"]:
        st = a["stats"]
        console.print(f"  {a['name']:<16} L {st['event_length_s']:5.1f}  e {st['event_frequency']:.2f}  c {st['correlation']:.2f}  "
                      + "  ".join(f"{a['recall'][k]:.2f}/{a['false_positive'][k]:.2f}" for k in points), highlight=False)
    lat = manifest["base"]["layer_latencies_ms"]
    console.print("segment latencies (ms, batch 1): " + ", ".join(
        f"{n} {v:.2f}" for n, v in zip([*manifest["base"]["segments"], "head"], lat)))
    console.print(f"{manifest['frames']} stream frames at {manifest['stream_fps']} fps "
                  f"({manifest['train_frames']} trained on, {manifest['heldout_frames']} held out) -> {out}")


@apps_app.command("run")
def run_cmd(
    video: Annotated[str, typer.Argument(help="Video file or sample name.")],
    apps_dir: Annotated[Path, typer.Option("--apps", help="Apps folder from `edgeva apps train`.")],
    budget: Annotated[float, typer.Option(help="Compute budget: ms of compute per second of video.")],
    scheduler: Annotated[str, typer.Option(help="mainstream, f1-per-cost, maxsharing or exhaustive.")] = "mainstream",
    frames: Annotated[int | None, typer.Option(help="At most this many stream frames.")] = None,
    feedback: Annotated[bool, typer.Option(help="Re-schedule when the measured cost is > 20% off the budget.")] = True,
    units: UnitsOpt = "stream",
    fractional_fps: FractionalOpt = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the run's statistics as JSON here.")] = None,
) -> None:
    """Run the scheduled apps over a video, sharing the base; print achieved fps and real cost."""
    import torch

    from edgeva.mainstream.apps import load_apps
    from edgeva.mainstream.runner import AdaptiveRunner
    from edgeva.mainstream.train import resample

    torch.set_num_threads(1)  # the cost model's latencies are single-stream; keep runs comparable
    folder = load_apps(apps_dir)
    path = _check_video(video)
    runner = AdaptiveRunner(folder, budget, scheduler, units=_units(units), feedback=feedback, fractional=fractional_fps)
    first = runner.schedule
    with _bars() as bar:
        task = bar.add_task(f"apps on {Path(path).name}", total=frames)
        for image in resample(path, folder.stream_fps, frames):
            runner.step(image)
            bar.advance(task)
    total = runner.finish()
    if total.frames == 0:
        raise EdgevaError(f"{video}: no frames")
    fps = folder.stream_fps
    table = Table("app", "freeze point", "scheduled fps", "achieved fps", "fired")
    achieved = total.achieved_fps(fps)
    for i, name in enumerate(folder.names):
        c = runner.schedule.choices[i]
        table.add_row(name, folder.manifest["base"]["freeze_points"][str(c.freeze)], f"{c.fps:g}",
                      f"{achieved[i]:.2f}", f"{total.fired[i]}/{total.runs[i]}")
    console.print(table)
    resched = sum(h["rescheduled"] for h in runner.history)
    console.print(f"budget {budget:g} ms/s; predicted cost {first.cost:.1f} (first schedule), measured "
                  f"{total.cost(fps):.1f} ms/s over {total.frames} frames; {resched} re-schedules; "
                  f"predicted mean F1 {runner.schedule.mean_f1:.3f}")
    if json_out:
        write_json(json_out, {"budget": budget, "scheduler": scheduler, "first_schedule": first.to_dict(folder.names),
                               "final_schedule": runner.schedule.to_dict(folder.names), "measured_cost": total.cost(fps),
                               "achieved_fps": achieved, "fired": total.fired, "runs": total.runs,
                               "windows": runner.history})


def _print_rows(title: str, rows: list[dict], key: str) -> None:
    table = Table(title=title)
    for col in (key, "scheduler", "predicted F1", "measured F1", "cost (model)", "cost (measured)",
                "choices (freeze point @ fps)"):
        table.add_column(col)
    for r in rows:
        if "infeasible" in r:
            table.add_row(f"{r[key]:g}", r["scheduler"], "-", "-", "-", "-", r["infeasible"])
            continue
        choices = ", ".join(f"{a['name']} {a['freeze']}@{a['fps']:g}" for a in r["apps"])
        measured = "-" if r.get("measured_cost") is None else f"{r['measured_cost']:.1f}"
        table.add_row(f"{r[key]:g}", r["scheduler"], f"{r['mean_f1']:.3f}", f"{r['measured_f1']:.3f}",
                      f"{r['cost']:.1f}", measured, choices)
    console.print(table)


@apps_app.command("eval")
def eval_cmd(
    apps_dir: Annotated[Path, typer.Option("--apps", help="Apps folder from `edgeva apps train`.")],
    budgets: Annotated[str, typer.Option(help="Budgets (ms of compute per s of video), comma-separated.")],
    out: Annotated[Path, typer.Option(help="Output prefix: writes PREFIX.json and PREFIX.png.")] = Path("runs/apps-eval"),
    app_counts: Annotated[str, typer.Option(help="App counts for the fixed-budget table (first N apps).")] = "2,3,6,9",
    count_budget: Annotated[float | None, typer.Option(help="Budget of the app-count table (default: the middle budget).")] = None,
    schedulers: Annotated[str, typer.Option(help="Schedulers to compare, comma-separated.")] = "mainstream,f1-per-cost,nosharing,maxsharing",
    videos: Annotated[list[str] | None, typer.Option("--videos", help="Measure on these whole videos (labelled with "
                                                     "YOLOX-Nano) instead of the held-out part of the training videos.")] = None,
    cost_frames: Annotated[int, typer.Option(help="Held-out frames run to measure each schedule's real cost (0: skip).")] = 50,
    units: UnitsOpt = "stream",
    fractional_fps: FractionalOpt = False,
) -> None:
    """Budgets x schedulers: predicted and measured event F1, choices, cost; and F1 by number of apps."""
    import torch

    from edgeva.mainstream.apps import load_apps
    from edgeva.mainstream.base import load_base
    from edgeva.mainstream.evaluate import app_count_table, budget_table, plot_tables, score_videos
    from edgeva.mainstream.scheduler import SCHEDULERS
    from edgeva.mainstream.train import load_stream

    folder = load_apps(apps_dir)
    _units(units)
    others = [v.strip() for item in videos or [] for v in item.split(",") if v.strip()]
    for name in others:
        _check_video(name)
    values = sorted(_budgets(budgets))
    names = [s.strip() for s in schedulers.split(",") if s.strip()]
    for n in names:
        try:
            SCHEDULERS.check(n)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        counts = [int(x) for x in app_counts.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--app-counts {app_counts!r}: expected integers") from None
    counts = [n for n in counts if n <= len(folder.specs)]
    fixed = count_budget or values[len(values) // 2]
    torch.set_num_threads(1)
    base = load_base()
    heldout, where, images = None, "held-out frames", None
    if others:  # whole other videos: labels, and every app's scores at every freeze point
        with _bars() as bar:
            bar.add_task(f"label and score {len(others)} videos", total=None)
            heldout, images = score_videos(folder, others, base)
        where = ", ".join(others)
    elif cost_frames > 0:  # the held-out frames, from the label cache training filled
        m = folder.manifest
        stream = load_stream(m["videos"], folder.stream_fps, limit=m.get("frames_per_video"))
        images = stream.images[~stream.split(m["train_fraction"])]
    images = images[:cost_frames] if cost_frames > 0 and images is not None else None
    with _bars() as bar:
        task = bar.add_task("schedule and measure", total=len(values) * len(names) + len(counts) * len(names))
        rows = budget_table(folder, values, schedulers=names, units=_units(units), tick=lambda: bar.advance(task),
                            images=images, base=base, fractional=fractional_fps, heldout=heldout)
        count_rows = app_count_table(folder, fixed, counts, schedulers=names, units=units,
                                     tick=lambda: bar.advance(task), images=images, base=base, fractional=fractional_fps,
                                     heldout=heldout)
    _print_rows(f"mean event F1 by budget ({len(folder.specs)} apps, {where})", rows, "budget")
    _print_rows(f"mean event F1 by number of apps (budget {fixed:g} ms/s)", count_rows, "apps_count")
    write_json(out.with_suffix(".json"), {"apps": folder.names, "measured_on": where, "units": units,
                                           "fractional_fps": fractional_fps, "budgets": rows,
                                           "app_counts": count_rows, "count_budget": fixed})
    plot_tables(rows, count_rows, out.with_suffix(".png"))
    console.print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


@bench_app.command("apps")
def bench_apps_cmd(
    video: Annotated[str, typer.Option(help="Sample video or file.")] = "store-aisle-detection",
    frames: Annotated[int, typer.Option(help="Frames to run.")] = 20,
    n_apps: Annotated[int, typer.Option("--apps", help="Apps sharing the base.")] = 6,
    threads: Annotated[int, typer.Option(help="Torch threads.")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")] = None,
) -> None:
    """Compute per frame of N apps sharing the base's prefix vs one app, at every freeze point."""
    from edgeva.bench.apps import bench_sharing
    from edgeva.cli.bench import print_rows

    if n_apps < 1 or frames < 1:
        raise ConfigError("--apps and --frames must be at least 1")
    print_rows(f"{n_apps} apps sharing the base prefix vs one app (ms per frame, best of 3)",
               bench_sharing(video, frames, n_apps, threads=threads), json_out)


@bench_app.command("schedulers")
def bench_schedulers_cmd(
    instances: Annotated[int, typer.Option(help="Random instances (3 apps, 4 freeze points, F = 5).")] = 40,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")] = None,
) -> None:
    """Mean-F1 gap of the greedy schedulers to the exact search on random small instances."""
    from edgeva.bench.apps import bench_schedulers
    from edgeva.cli.bench import print_rows

    if instances < 1:
        raise ConfigError("--instances must be at least 1")
    print_rows("greedy vs exact (mean F1 gap)", bench_schedulers(instances), json_out)
