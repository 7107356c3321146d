"""``edgeva demo``: edgeva's main job on the bundled sample videos.

1. Train the AccMPEG quality selector for YOLOX-Nano on car-detection and
   one-by-one-person-detection (or reuse the one trained by an earlier run).
   Crucio's codec (autoencoder + keyframe GRU) is trained on the same two videos (or reused).
2. Replay four videos the selector has never seen through AccMPEG and the baselines (the
   five of AccMPEG's paper, TileClipper and Crucio), every configuration of each, and compare
   accuracy, bytes and delay side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeva.cli.app import app, console, progress

TRAIN_VIDEOS = ("car-detection", "one-by-one-person-detection")
EVAL_VIDEOS = ("bottle-detection", "store-aisle-detection", "people-detection", "fruit-and-vegetable-detection")
SCHEMES = ("uniform", "accmpeg", "dds", "eaar", "reducto", "vigil", "tileclipper", "crucio")


def _stage(bar):
    def stage(description: str, total: int):
        task = bar.add_task(description, total=total)
        return lambda: bar.advance(task)

    return stage


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the selector, report, plot and results database go.")] = Path("out/demo"),
    frames_per_video: Annotated[int, typer.Option(help="Selector training frames per training video.")] = 150,
    frames: Annotated[int, typer.Option(help="Frames per evaluation video (from the start).")] = 101,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train a new selector and Crucio codec even if they exist.")] = False,
) -> None:
    """Train (or reuse) the AccMPEG selector, then compare every scheme on four unseen videos."""
    from edgeva.accmpeg.selector import load_selector, save_selector
    from edgeva.accmpeg.train import TrainConfig, train_selector
    from edgeva.cli.evaluation import print_best
    from edgeva.eval.harness import EvalConfig, evaluate
    from edgeva.eval.report import comparison, encoder_comparison, write_outputs
    from edgeva.store.evaluation import save_eval

    out.mkdir(parents=True, exist_ok=True)
    selector_path = out / "selector.pt"
    cfg = TrainConfig(videos=list(TRAIN_VIDEOS), frames_per_video=frames_per_video, log=lambda m: console.print(m, markup=False))
    reuse = False
    if selector_path.exists() and not retrain:
        meta = load_selector(selector_path).meta
        reuse = meta.train_videos == [f"{v}.mp4" for v in TRAIN_VIDEOS] and meta.frames_per_video == frames_per_video
    if reuse:
        console.print(f"[1/2] reusing the selector in {selector_path} (pass --retrain to train again)")
    else:
        console.print(f"[1/2] training the AccMPEG selector for yolox-nano on {', '.join(TRAIN_VIDEOS)} ({frames_per_video} frames each)")
        with progress() as bar:
            selector = train_selector(cfg, on_stage=_stage(bar))
        save_selector(selector, selector_path)
    from edgeva.cli.crucio import trained_codec

    crucio_path = trained_codec(out / "crucio.pt", list(TRAIN_VIDEOS), retrain=retrain)
    console.print(f"[2/2] comparing {', '.join(SCHEMES)} on {', '.join(EVAL_VIDEOS)} (first {frames} frames; unseen by the selector)")
    eval_cfg = EvalConfig(videos=list(EVAL_VIDEOS), schemes=list(SCHEMES), checkpoints={"selector": str(selector_path), "crucio": str(crucio_path)},
                          frames=frames)
    with progress() as bar:
        result = evaluate(eval_cfg, on_progress=_stage(bar), log=lambda m: console.print(m, markup=False))
    paths = write_outputs(result, out)
    db = str(out / "results.db")
    run_id = save_eval(db, model=eval_cfg.model, selector=str(selector_path), target_f1=eval_cfg.target_f1,
                       settings={"videos": list(EVAL_VIDEOS), "schemes": list(SCHEMES), "frames": frames, "out": str(out)},
                       records=result.records, best=result.best)
    print_best(result.best, f"cheapest configuration reaching F1 >= {eval_cfg.target_f1}")
    for row in comparison(result):
        ours, rival = row["accmpeg"], row["best_baseline"]
        if ours is None:
            continue
        if not ours["reaches_target"]:
            console.print(f"{row['video']}: AccMPEG does not reach F1 {eval_cfg.target_f1} (best {ours['f1']:.3f})")
        elif rival is None:
            console.print(f"{row['video']}: AccMPEG {ours['delay_mean_s']:.3f} s, {ours['bytes'] / 1000:.1f} KB; no baseline reaches the target")
        else:
            console.print(
                f"{row['video']}: AccMPEG {ours['delay_mean_s']:.3f} s / {ours['bytes'] / 1000:.1f} KB vs best baseline "
                f"{rival['scheme']} {rival['delay_mean_s']:.3f} s / {rival['bytes'] / 1000:.1f} KB: delay {row['delay_saving_pct']:+.1f}%, bytes {row['bytes_saving_pct']:+.1f}%"
            )
    console.print("AccMPEG against uniform CRF at the same resolution and frame rate (report.md has every point):")
    by_video: dict[str, list[dict]] = {}
    for row in encoder_comparison(result):
        if row["uniform"] is not None:
            by_video.setdefault(row["video"], []).append(row)
    for video, rows in by_video.items():
        reaching = [r for r in rows if r["accmpeg"]["f1"] >= eval_cfg.target_f1]
        row = min(reaching, key=lambda r: r["accmpeg"]["bytes"]) if reaching else max(rows, key=lambda r: r["accmpeg"]["f1"])
        console.print(f"  {video}: F1 {row['accmpeg']['f1']:.3f} with {row['accmpeg']['bytes'] / 1000:.1f} KB vs uniform "
                      f"{row['uniform_bytes_at_f1'] / 1000:.1f} KB: {row['bytes_saving_pct']:+.1f}% bytes")
    console.print(f"report: {paths['report']}\nplot:   {paths['plot']}\nrun {run_id} stored in {db} (`edgeva runs --db {db}`)")
