"""``edgeva eval`` and ``edgeva runs``: compare streaming schemes side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeva.cli.app import app, console, progress, split_list
from edgeva.device import DEVICE_HELP

DEFAULT_DB = "runs/edgeva-results.db"  # runs/ holds every run artefact (git-ignored)


ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where tasks run: serial (this process) or ray (a local Ray runtime sized to this machine, or the cluster at --ray-address; docs/scaling.md).")]
RayAddressOpt = Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster (HOST:PORT, ray://HOST:PORT or auto) instead of starting a local runtime.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Ray workers, each loading the models once (default: one per CPU of the runtime).")]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]


def build_executor(name: str, *, address: str | None, workers: int | None, device: str):
    """(executor, resolved device) for the CLI options; bad values are one error line.

    With Ray and a CUDA device the GPU is checked where it runs: each worker reserves one and
    uses the one Ray assigns it; ``auto`` is resolved on this machine.
    """
    from edgeva.device import gpus_for, resolve_device
    from edgeva.errors import ConfigError
    from edgeva.executor import create_executor

    if address and name != "ray":
        raise ConfigError(f"--ray-address {address}: needs --executor ray")
    if name == "ray" and device.strip().lower().startswith("cuda"):
        resolve_device(device, cuda_count=1 << 16)  # the syntax only
        resolved = "cuda"
    else:
        resolved = resolve_device(device)
    return create_executor(name, workers=workers, address=address, gpus_per_worker=gpus_for(resolved)), resolved


def report_failures(failures: list[dict], total: int, where: str) -> None:
    """After the outputs are written: a run with failed tasks says how many and exits 1."""
    if failures:
        console.print(f"{len(failures)} of {total} tasks failed (listed in {where}); the other results are complete", markup=False)
        raise typer.Exit(1)


def print_best(best: list[dict], title: str) -> None:
    table = Table("video", "scheme", "config", "F1", "KB", "kbps", "delay mean s", "p95 s", "camera ms/f", "server ms/f", title=title)
    for b in sorted(best, key=lambda b: (b["video"], b["scheme"])):
        config = ", ".join(f"{k}={v}" for k, v in b["config"].items())
        f1 = f"{b['f1']:.3f}" + ("" if b.get("reaches_target", True) else " (<target)")
        table.add_row(b["video"], b["scheme"], config, f1, f"{b['bytes'] / 1000:.1f}", f"{b['kbps']:.0f}", f"{b['delay_mean_s']:.3f}",
                      f"{b['delay_p95_s']:.3f}", f"{b['camera_ms_per_frame']:.1f}", f"{b['server_ms_per_frame']:.1f}")
    console.print(table)


def pool_selectors(videos: list[str], pool: str, frames_per_video: int, stage) -> dict[str, dict[str, str]]:
    """Per evaluated video, the leave-one-video-out selector (trained now or reused)."""
    from edgeva import assets
    from edgeva.accmpeg.loo import leave_one_out
    from edgeva.accmpeg.train import TrainConfig

    names = assets.sample_videos() if pool == "samples" else split_list([pool])
    base = TrainConfig(videos=[], frames_per_video=frames_per_video, log=lambda m: console.print(m, markup=False))
    paths = leave_one_out(videos, names, base, assets.cache_dir() / "selectors", on_stage=stage)
    return {video: {"selector": str(path)} for video, path in paths.items()}


@app.command("eval")
def eval_cmd(
    videos: Annotated[list[str], typer.Option("--videos", help="Videos (repeat or comma-separate): paths or sample names.")],
    out: Annotated[Path, typer.Option(help="Output folder for results.json/csv, report.md and accuracy_delay.png.")],
    schemes: Annotated[str, typer.Option(help="Comma-separated schemes (`edgeva info` lists them).")] = "uniform,accmpeg,accmpeg-oracle,dds,eaar,reducto,vigil",
    model: Annotated[str, typer.Option(help="Final DNN on the server.")] = "yolox-nano",
    selector: Annotated[Path | None, typer.Option(help="AccMPEG selector checkpoint.")] = None,
    selector_pool: Annotated[str | None, typer.Option(help="Leave-one-video-out selectors instead of --selector: per evaluated video, one trained on these videos "
                                                           "minus it (comma-separated; 'samples': the shared sample videos), cached by its inputs.")] = None,
    selector_frames: Annotated[int, typer.Option(help="With --selector-pool: training frames per video.")] = 150,
    crucio: Annotated[Path | None, typer.Option(help="Crucio codec checkpoint (`edgeva crucio train`).")] = None,
    mae: Annotated[Path | None, typer.Option(help="NeuroMesh MAE checkpoint (`edgeva neuromesh train`).")] = None,
    mae_head: Annotated[Path | None, typer.Option("--mae-head", help="NeuroMesh zero-decoding head for scheme neuromesh-zero (`edgeva neuromesh train-head`).")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per video (from the start).")] = None,
    target_f1: Annotated[float, typer.Option(help="Accuracy target for picking each scheme's cheapest configuration.")] = 0.9,
    link_mbps: Annotated[float, typer.Option(help="Uplink bandwidth shared by all streams.")] = 2.5,
    streams: Annotated[int, typer.Option(help="Streams sharing the uplink.")] = 5,
    rtt_ms: Annotated[float, typer.Option(help="Round-trip time.")] = 100.0,
    chunk: Annotated[int, typer.Option(help="Frames per chunk.")] = 10,
    no_sweep: Annotated[bool, typer.Option("--no-sweep", help="Only each scheme's default configuration.")] = False,
    adapt_every: Annotated[int, typer.Option(help="AccMPEG adapts its selector online: every N chunks the camera uploads a frame, the server fine-tunes "
                                                  "the selector on its AccGrad and sends weights back, all bytes counted (0: off; docs/accmpeg-selector.md).")] = 0,
    db: Annotated[str, typer.Option(help="Results database: a SQLite path or any SQLAlchemy URL.")] = DEFAULT_DB,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute references and replays.")] = False,
    profile_videos: Annotated[str | None, typer.Option(help="Videos Reducto profiles its thresholds on (comma-separated; the evaluated one is always left out). Default: the sample videos.")] = None,
    executor: ExecutorOpt = "serial",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Replay videos through every scheme's configurations; write tables, a plot and the run into the database."""
    from edgeva.errors import ConfigError
    from edgeva.eval.harness import EvalConfig, evaluate
    from edgeva.eval.report import write_outputs
    from edgeva.net import Link
    from edgeva.store.evaluation import save_eval

    try:
        link = Link(bandwidth_mbps=link_mbps, streams=streams, rtt_ms=rtt_ms)
    except ValueError as exc:
        raise ConfigError(f"link: {exc}") from None
    if adapt_every < 0:
        raise ConfigError(f"--adapt-every {adapt_every}: must be >= 0 (0: off)")
    runner, resolved_device = build_executor(executor, address=ray_address, workers=workers, device=device)
    cfg = EvalConfig(
        videos=split_list(videos), schemes=split_list([schemes]), model=model, checkpoints={k: str(p) for k, p in (("selector", selector), ("crucio", crucio), ("mae", mae), ("mae-head", mae_head)) if p}, frames=frames,
        chunk=chunk, target_f1=target_f1, link=link, sweep=not no_sweep, use_cache=not no_cache,
        profile_videos=split_list([profile_videos]) if profile_videos else None, device=resolved_device,
        scheme_options={"accmpeg": {"adapt_every": adapt_every}} if adapt_every else {},
    )
    with progress() as bar:
        def stage(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        if selector_pool:
            cfg.video_checkpoints = pool_selectors(cfg.videos, selector_pool, selector_frames, stage)
        result = evaluate(cfg, on_progress=stage, log=lambda m: console.print(m, markup=False), executor=runner)
    paths = write_outputs(result, out)
    settings = {"videos": list(cfg.videos), "schemes": list(cfg.schemes), "frames": frames, "chunk": chunk,
                "link": {"mbps": link_mbps, "streams": streams, "rtt_ms": rtt_ms}, "sweep": cfg.sweep, "out": str(out),
                "executor": executor, "device": resolved_device, "failures": result.failures, "adapt_every": adapt_every}
    selector_note = cfg.checkpoints.get("selector") or (f"leave-one-out from {selector_pool}" if selector_pool else None)
    run_id = save_eval(db, model=model, selector=selector_note, target_f1=target_f1, settings=settings, records=result.records, best=result.best)
    print_best(result.best, f"cheapest configuration reaching F1 >= {target_f1} (run {run_id})")
    console.print(f"report -> {paths['report']}\nplot   -> {paths['plot']}\nall rows -> {paths['csv']}, {paths['json']}; run {run_id} stored in {db}")
    report_failures(result.failures, len(result.records) + len(result.failures), str(paths["json"]))


@app.command()
def runs(
    db: Annotated[str, typer.Option(help="Results database: a SQLite path or any SQLAlchemy URL.")] = DEFAULT_DB,
    show: Annotated[int | None, typer.Option(help="Print the best configurations of this run.")] = None,
) -> None:
    """List stored evaluation runs, or show one."""
    from edgeva.errors import ConfigError
    from edgeva.store.evaluation import list_eval_runs, load_eval_run

    if "://" not in db and not Path(db).exists():
        raise ConfigError(f"{db}: no such results database")
    if show is not None:
        settings, best = load_eval_run(db, show)
        print_best(best, f"run {show}: {settings['model']}, target F1 {settings['target_f1']}, videos {', '.join(settings.get('videos', []))}")
        return
    table = Table("run", "created", "model", "target F1", "videos", "schemes", "records")
    for r in list_eval_runs(db):
        table.add_row(str(r["id"]), r["created_at"], r["model"], f"{r['target_f1']:.2f}", ", ".join(r["videos"]), ", ".join(r["schemes"]), str(r["records"]))
    console.print(table)
