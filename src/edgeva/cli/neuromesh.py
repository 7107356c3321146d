"""``edgeva neuromesh train`` (NeuroMesh's masked auto-encoder and its tubelet sampler) and
``edgeva neuromesh train-head`` (its zero-decoding detection head)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edgeva.cli.app import app, console, progress, reuse_or_train, split_list, stage_bars, writable

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
    reward: Annotated[str, typer.Option(help="The sampler's reward: pixel (reconstruction error) or detection (plus YOLOX-Nano's AccGrad of the reconstruction).")] = "pixel",
    detection_weight: Annotated[float, typer.Option(help="With --reward detection: weight of the detection term.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic for a seed).")] = 0,
    sampler_positions: Annotated[bool, typer.Option("--sampler-positions/--no-sampler-positions",
                                                    help="Whether the sampler sees the tubelets' position codes (AdaMAE's) or their content only.")] = True,
) -> None:
    """Train the MAE + sampler (best state on held-out frames)."""
    from edgeva.neuromesh import save_mae
    from edgeva.neuromesh.model import MaeSpec
    from edgeva.neuromesh.train import NeuroMeshTrainConfig, train_mae

    names = split_list(videos)
    writable(out)
    cfg = NeuroMeshTrainConfig(videos=names, frames_per_video=frames_per_video, steps=steps, mask_ratio=mask_ratio, seed=seed,
                               sampler_lr_scale=sampler_lr_scale, reward=reward, detection_weight=detection_weight,
                               spec=MaeSpec(sampler_positions=sampler_positions), log=lambda m: console.print(m, markup=False))
    start = time.perf_counter()
    with progress() as bar:
        codec = train_mae(cfg, on_stage=stage_bars(bar))
    save_mae(codec, out)
    meta = codec.meta
    console.print(f"neuromesh MAE -> {out} ({time.perf_counter() - start:.0f} s): held-out dropped tubelets {meta.val_psnr:.2f} dB "
                  f"(flat grey {meta.val_flat_psnr:.2f} dB) at mask ratio {meta.mask_ratio}, {meta.reward} reward (step {meta.best_step} of {meta.steps})")



@neuromesh_app.command("train-head")
def neuromesh_train_head(
    mae: Annotated[Path, typer.Option(help="The MAE checkpoint the head reads (`edgeva neuromesh train`); frozen.")],
    out: Annotated[Path, typer.Option(help="Head checkpoint to write.")],
    videos: Annotated[list[str], typer.Option("--videos", help="Training videos (repeat, or separate by commas).")],
    frames_per_video: Annotated[int, typer.Option(help="Consecutive frames from the start of each video.")] = 150,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic for a seed).")] = 0,
) -> None:
    """Distil the zero-decoding head (detections from the MAE encoder's latent tokens) from YOLOX-Nano."""
    from edgeva.neuromesh import load_mae
    from edgeva.neuromesh.zero import save_head
    from edgeva.neuromesh.zero_train import HeadTrainConfig, train_head

    codec = load_mae(mae)
    writable(out)
    cfg = HeadTrainConfig(videos=split_list(videos), frames_per_video=frames_per_video, steps=steps, seed=seed,
                          log=lambda m: console.print(m, markup=False))
    start = time.perf_counter()
    with progress() as bar:
        checkpoint = train_head(cfg, codec, on_stage=stage_bars(bar))
    save_head(checkpoint, out)
    meta = checkpoint.meta
    console.print(f"neuromesh head -> {out} ({time.perf_counter() - start:.0f} s): held-out distillation loss {meta.untrained_val_loss:.3f} "
                  f"untrained -> {meta.val_loss:.3f}, F1 {meta.val_f1:.3f} against YOLOX-Nano (step {meta.best_step} of {meta.steps})")


def trained_mae(path: Path, videos: list[str], *, frames_per_video: int = 150, retrain: bool = False) -> Path:
    """The MAE checkpoint at ``path``, trained on ``videos`` with the default settings (pixel
    reward) unless one trained so is already there (the demo's cache)."""
    from edgeva.neuromesh import load_mae, save_mae
    from edgeva.neuromesh.train import NeuroMeshTrainConfig, train_mae

    cfg = NeuroMeshTrainConfig(videos=list(videos), frames_per_video=frames_per_video, log=lambda m: console.print(m, markup=False))

    def trained_with(p: Path) -> tuple:
        meta = load_mae(p).meta
        return meta.train_videos, meta.frames_per_video, meta.steps, meta.seed, meta.reward

    return reuse_or_train(path, "NeuroMesh MAE", wanted=([f"{v}.mp4" for v in videos], frames_per_video, cfg.steps, cfg.seed, cfg.reward),
                          trained_with=trained_with, train=lambda on_stage: train_mae(cfg, on_stage=on_stage), save=save_mae,
                          retrain=retrain)
