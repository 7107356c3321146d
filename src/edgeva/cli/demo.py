"""``edgeva demo``: edgeva's main job on the bundled sample videos.

1. Train the AccMPEG quality selector for YOLOX-Nano on car-detection and
   one-by-one-person-detection (or reuse the one trained by an earlier run).
   NeuroMesh's MAE + tubelet sampler and Crucio's codec (autoencoder + keyframe GRU) are trained
   on the same two videos (or reused).
2. Replay four videos none of them has seen through AccMPEG, its oracle ceiling, NeuroMesh and
   the baselines (the five of AccMPEG's paper, NeuroMesh's TileClipper and Crucio), every
   configuration of each, compare accuracy, bytes and delay side by side, check AccMPEG's
   goals (fewest bytes at the target F1; encoder against encoder, at least 35% fewer bytes than
   uniform quality), with the measured reason where one is missed, and set NeuroMesh against
   uniform quality at equal F1 and at equal bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeva.cli.app import app, console, progress, stage_bars
from edgeva.cli.evaluation import (
    ExecutorOpt,
    RayAddressOpt,
    WorkersOpt,
    build_executor,
    report_failures,
)

TRAIN_VIDEOS = ("car-detection", "one-by-one-person-detection")
EVAL_VIDEOS = ("bottle-detection", "store-aisle-detection", "people-detection", "fruit-and-vegetable-detection")
# Where the demo's tasks run by default. Serial: on 2 cores torch already runs YOLOX-Nano (most
# of the evaluation) on both, so two Ray workers gain little, and parallel workers inflate the
# measured camera and server times the demo's delays are made of (docs/scaling.md);
# `--executor ray` opts in.
DEMO_EXECUTOR = "serial"
# Frames per evaluated video: 81 (101 before NeuroMesh joined) keeps a fresh `make demo` within 15
# minutes on an idle 2-core machine; `edgeva eval --frames N` replays more.
DEMO_FRAMES = 81
SCHEMES = ("uniform", "accmpeg", "accmpeg-oracle", "neuromesh", "dds", "eaar", "reducto", "vigil", "tileclipper", "crucio")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the selector, report, plot and results database go.")] = Path("out/demo"),
    frames_per_video: Annotated[int, typer.Option(help="Selector training frames per training video.")] = 150,
    frames: Annotated[int, typer.Option(help="Frames per evaluation video (from the start).")] = DEMO_FRAMES,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train a new selector, MAE and Crucio codec even if they exist.")] = False,
    executor: ExecutorOpt = DEMO_EXECUTOR,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    leave_one_out: Annotated[bool, typer.Option("--leave-one-out", help="AccMPEG with one selector per evaluated video, trained on every other "
                                                                         "sample video (cached by its inputs; slower, see docs/accmpeg-selector.md).")] = False,
) -> None:
    """Train (or reuse) the AccMPEG selector, then compare every scheme on four unseen videos."""
    runner, _device = build_executor(executor, address=ray_address, workers=workers, device="cpu")
    with runner:  # one runtime (Ray, when asked for) serves training's AccGrad and the evaluation
        _run(out, frames_per_video, frames, retrain, executor, runner, leave_one_out)


def _run(out: Path, frames_per_video: int, frames: int, retrain: bool, executor: str, runner, leave_one_out: bool) -> None:
    from edgeva.accmpeg.selector import load_selector, save_selector
    from edgeva.accmpeg.train import TrainConfig, train_selector
    from edgeva.cli.evaluation import print_best
    from edgeva.eval.harness import EvalConfig, evaluate
    from edgeva.eval.report import write_outputs
    from edgeva.store.evaluation import save_eval

    out.mkdir(parents=True, exist_ok=True)
    selector_path = out / "selector.pt"
    cfg = TrainConfig(videos=list(TRAIN_VIDEOS), frames_per_video=frames_per_video, log=lambda m: console.print(m, markup=False))
    reuse = False
    if selector_path.exists() and not retrain:
        meta = load_selector(selector_path).meta
        reuse = (meta.train_videos, meta.frames_per_video, meta.finetune_stages) == ([f"{v}.mp4" for v in TRAIN_VIDEOS], frames_per_video,
                                                                                cfg.finetune_stages)
    if reuse:
        console.print(f"[1/2] reusing the selector in {selector_path} (pass --retrain to train again)")
    else:
        console.print(f"[1/2] training the AccMPEG selector for yolox-nano on {', '.join(TRAIN_VIDEOS)} ({frames_per_video} frames each)")
        with progress() as bar:
            selector = train_selector(cfg, on_stage=stage_bars(bar), executor=runner)
        save_selector(selector, selector_path)
    from edgeva.cli.crucio import trained_codec
    from edgeva.cli.neuromesh import trained_mae

    mae_path = trained_mae(out / "mae.pt", list(TRAIN_VIDEOS), frames_per_video=frames_per_video, retrain=retrain)
    crucio_path = trained_codec(out / "crucio.pt", list(TRAIN_VIDEOS), retrain=retrain)
    console.print(f"[2/2] comparing {', '.join(SCHEMES)} on {', '.join(EVAL_VIDEOS)} (first {frames} frames; unseen in training)")
    eval_cfg = EvalConfig(videos=list(EVAL_VIDEOS), schemes=list(SCHEMES), frames=frames,
                          checkpoints={"selector": str(selector_path), "mae": str(mae_path), "crucio": str(crucio_path)})
    with progress() as bar:
        if leave_one_out:
            from edgeva.cli.evaluation import pool_selectors

            eval_cfg.video_checkpoints = pool_selectors(list(EVAL_VIDEOS), "samples", frames_per_video, stage_bars(bar))
        result = evaluate(eval_cfg, on_progress=stage_bars(bar), log=lambda m: console.print(m, markup=False), executor=runner)
    paths = write_outputs(result, out)
    db = str(out / "results.db")
    run_id = save_eval(db, model=eval_cfg.model, selector=str(selector_path), target_f1=eval_cfg.target_f1,
                       settings={"videos": list(EVAL_VIDEOS), "schemes": list(SCHEMES), "frames": frames, "out": str(out),
                                 "executor": executor, "failures": result.failures},
                       records=result.records, best=result.best)
    print_best(result.best, f"cheapest configuration reaching F1 >= {eval_cfg.target_f1}")
    _print_goals(result)
    _print_neuromesh(result)
    console.print(f"report: {paths['report']}\nplot:   {paths['plot']}\nrun {run_id} stored in {db} (`edgeva runs --db {db}`)")
    report_failures(result.failures, len(result.records) + len(result.failures), str(paths["report"]))


def _print_goals(result) -> None:
    """AccMPEG against every other scheme, the oracle and uniform quality, and the two goals."""
    from edgeva.eval.goals import ORACLE, encoder_saving, equal_f1, fewest_bytes, goals, reasons

    target = result.config.target_f1
    for row in fewest_bytes(result):
        ours, rival, oracle = row["ours"], row["rival"], row["oracle"]
        mine = f"{ours['bytes'] / 1000:.1f} KB" if ours and ours["reaches_target"] else "misses the target"
        other = f"{rival['scheme']} {rival['bytes'] / 1000:.1f} KB" if rival else "no other scheme reaches it"
        ceiling = f"{oracle['bytes'] / 1000:.1f} KB" if oracle and oracle["reaches_target"] else "misses the target"
        console.print(f"{row['video']}: at F1 >= {target} AccMPEG {mine}, cheapest other {other}, oracle {ceiling}")
    console.print("Learned selector vs oracle vs uniform at equal F1, full resolution and frame rate (bytes; saving against uniform):")
    for row in equal_f1(result):
        kb, saving = row["bytes"], row["saving_pct"]
        parts = [f"{name} {kb[name] / 1000:.1f} KB ({saving[name]:+.1f}%)" for name in ("accmpeg", ORACLE) if name in saving]
        console.print(f"  {row['video']} at F1 {row['f1']:.3f}: uniform {kb['uniform'] / 1000:.1f} KB, " + ", ".join(parts))
    g = goals(result)
    points = ", ".join(f"{p['video']} {p['saving_pct']:+.1f}%" for p in encoder_saving(result) if p["saving_pct"] is not None)
    console.print(f"goal 1, fewest bytes at F1 >= {target} on at least 3 of 4 videos: {g['videos_won']} of {g['videos']} -> "
                  f"{'met' if g['fewest_bytes_met'] else 'MISSED'}")
    mean = g["encoder_saving_mean_pct"]
    console.print(f"goal 2, encoder against encoder at least 35% fewer bytes than uniform on average: {points}; mean "
                  f"{'n/a' if mean is None else f'{mean:+.1f}%'} -> {'met' if g['encoder_saving_met'] else 'MISSED'}")
    for line in reasons(result):
        console.print(f"  why: {line}", markup=False)


def _print_neuromesh(result) -> None:
    """NeuroMesh against uniform quality, full resolution and frame rate: F1 at equal bytes and bytes at equal F1."""
    from edgeva.eval.goals import versus_uniform

    console.print("NeuroMesh against uniform quality, full resolution and frame rate:")
    for row in versus_uniform(result, "neuromesh"):
        uniform = "below uniform's cheapest" if row["uniform_f1"] is None else f"uniform {row['uniform_f1']:.3f}"
        line = f"  {row['video']}: with {row['bytes'] / 1000:.1f} KB neuromesh F1 {row['f1']:.3f}, {uniform}"
        if (f := row["at_f1"]) is not None:
            line += f"; at F1 {f['f1']:.3f} neuromesh {f['bytes'] / 1000:.1f} KB, uniform {f['uniform_bytes'] / 1000:.1f} KB ({f['saving_pct']:+.1f}%)"
        console.print(line)
