"""``edgeva crucio train``: the Crucio baseline's autoencoder and keyframe GRU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edgeva.cli.app import app, console, progress, reuse_or_train, split_list, stage_bars, writable

crucio_app = typer.Typer(help="Train the Crucio baseline's learned codec.", no_args_is_help=True)
app.add_typer(crucio_app, name="crucio")


@crucio_app.command("train")
def crucio_train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write.")],
    videos: Annotated[list[str], typer.Option("--videos", help="Training videos (repeat, or separate by commas).")],
    frames_per_video: Annotated[int, typer.Option(help="Consecutive frames from the start of each video.")] = 150,
    steps: Annotated[int, typer.Option(help="Autoencoder optimiser steps.")] = 250,
    gru_steps: Annotated[int, typer.Option(help="Keyframe GRU optimiser steps.")] = 100,
    rate_weight: Annotated[float, typer.Option(help="Loss = MSE + rate_weight x bits per pixel.")] = 0.002,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic for a seed).")] = 0,
) -> None:
    """Train Crucio's clip autoencoder (best state on held-out frames) and keyframe GRU."""
    from edgeva.crucio import save_crucio
    from edgeva.crucio.train import CrucioTrainConfig, train_crucio

    names = split_list(videos)
    writable(out)
    cfg = CrucioTrainConfig(videos=names, frames_per_video=frames_per_video, steps=steps, gru_steps=gru_steps,
                            rate_weight=rate_weight, seed=seed, log=lambda m: console.print(m, markup=False))
    start = time.perf_counter()
    with progress() as bar:
        codec = train_crucio(cfg, on_stage=stage_bars(bar))
    save_crucio(codec, out)
    meta = codec.meta
    console.print(f"crucio -> {out} ({time.perf_counter() - start:.0f} s): held-out PSNR {meta.val_psnr:.2f} dB (YCbCr) at "
                  f"{meta.val_bpp:.3f} bits per pixel (step {meta.best_step} of {meta.steps})")


def trained_codec(path: Path, videos: list[str], *, frames_per_video: int = 150, retrain: bool = False) -> Path:
    """The Crucio checkpoint at ``path``, trained on ``videos`` with the default settings unless
    one trained so is already there (the demo's cache)."""
    from edgeva.crucio import load_crucio, save_crucio
    from edgeva.crucio.train import CrucioTrainConfig, train_crucio

    cfg = CrucioTrainConfig(videos=list(videos), frames_per_video=frames_per_video, log=lambda m: console.print(m, markup=False))

    def trained_with(p: Path) -> tuple:
        meta = load_crucio(p).meta
        return meta.train_videos, meta.frames_per_video, meta.steps, meta.seed

    return reuse_or_train(path, "Crucio codec", wanted=([f"{v}.mp4" for v in videos], frames_per_video, cfg.steps, cfg.seed),
                          trained_with=trained_with, train=lambda on_stage: train_crucio(cfg, on_stage=on_stage), save=save_crucio,
                          retrain=retrain)
