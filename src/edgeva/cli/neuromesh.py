"""``edgeva neuromesh train``: NeuroMesh's masked auto-encoder and its tubelet sampler."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edgeva.cli.app import app, console, progress, split_list, writable
from edgeva.cli.crucio import stage_bars

neuromesh_app = typer.Typer(help="Train NeuroMesh's masked auto-encoder (MAE) and sampler.", no_args_is_help=True)
app.add_typer(neuromesh_app, name="neuromesh")


@neuromesh_app.command("train")
def neuromesh_train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write.")],
    videos: Annotated[list[str], typer.Option("--videos", help="Training videos (repeat, or separate by commas).")],
    frames_per_video: Annotated[int, typer.Option(help="Consecutive frames from the start of each video.")] = 150,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    mask_ratio: Annotated[float, typer.Option(help="Share of tubelets dropped in training, in (0, 1).")] = 0.8,
    sampler_lr_scale: Annotated[float, typer.Option(help="The sampler's learning rate as a multiple of the MAE's.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic for a seed).")] = 0,
) -> None:
    """Train the MAE + sampler (best state on held-out frames)."""
    from edgeva.neuromesh import save_mae
    from edgeva.neuromesh.train import NeuroMeshTrainConfig, train_mae

    names = split_list(videos)
    writable(out)
    cfg = NeuroMeshTrainConfig(videos=names, frames_per_video=frames_per_video, steps=steps, mask_ratio=mask_ratio, seed=seed,
                               sampler_lr_scale=sampler_lr_scale, log=lambda m: console.print(m, markup=False))
    start = time.perf_counter()
    with progress() as bar:
        codec = train_mae(cfg, on_stage=stage_bars(bar))
    save_mae(codec, out)
    meta = codec.meta
    console.print(f"neuromesh MAE -> {out} ({time.perf_counter() - start:.0f} s): held-out dropped tubelets {meta.val_psnr:.2f} dB "
                  f"(flat grey {meta.val_flat_psnr:.2f} dB) at mask ratio {meta.mask_ratio} (step {meta.best_step} of {meta.steps})")

