"""``edgeva stream``, ``accgrad``, ``selector train`` and ``bench camera``: AccMPEG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from edgeva import assets
from edgeva.cli.app import (
    app,
    bench_app,
    console,
    err_console,
    progress,
    split_list,
    writable,
    write_json,
)
from edgeva.cli.evaluation import ExecutorOpt, RayAddressOpt, WorkersOpt, build_executor
from edgeva.errors import ConfigError, EdgevaError

selector_app = typer.Typer(help="Train and inspect AccMPEG quality selectors.", no_args_is_help=True)
app.add_typer(selector_app, name="selector")


def _warn(message: str) -> None:
    err_console.print(f"edgeva: warning: {message}", markup=False, highlight=False)


@app.command()
def stream(
    video: Annotated[str, typer.Argument(help="Video file, image pattern, URL or sample name.")],
    out: Annotated[Path, typer.Option(help="Output video (.mp4/.mkv): the chunks as the server receives them.")],
    scheme: Annotated[str, typer.Option(help="accmpeg or uniform.")] = "accmpeg",
    selector: Annotated[Path | None, typer.Option(help="Selector checkpoint (scheme accmpeg).")] = None,
    crf: Annotated[int, typer.Option(help="CRF of the uniform scheme.")] = 35,
    k: Annotated[int, typer.Option(help="Chunk length: the selector runs once per k frames.")] = 10,
    alpha: Annotated[float, typer.Option(help="Blocks with selector probability >= alpha get high quality.")] = 0.2,
    gamma: Annotated[int | None, typer.Option(help="Dilate the selection by this many blocks (default: edgeva's measured choice).")] = None,
    frames: Annotated[int | None, typer.Option(help="Stream at most this many frames.")] = None,
    codec: Annotated[str, typer.Option(help="h264, hevc or vp9.")] = "h264",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write statistics as JSON here.")] = None,
) -> None:
    """Stream a video as independent k-frame chunks, AccMPEG-encoded or uniform."""
    from edgeva.accmpeg.camera import ChunkCamera
    from edgeva.quality import QualityOptions, create_policy
    from edgeva.video import EncoderSettings, Mp4Writer, open_video

    if k < 1:
        raise ConfigError(f"--k {k}: must be at least 1")
    source = open_video(assets.resolve_video(video), limit=frames)
    info = source.info
    if scheme == "accmpeg" and selector is None:
        raise ConfigError("--scheme accmpeg needs --selector PATH (train one with `edgeva selector train`)")
    policy = create_policy(scheme, QualityOptions(crf=crf, selector=selector, alpha=alpha, gamma=gamma, warn=_warn))
    camera = ChunkCamera(policy, EncoderSettings(codec=codec, fps=info.fps))
    chunks, buffer, first = [], [], 0
    with Mp4Writer(out, codec=codec, width=info.width, height=info.height, fps=info.fps) as writer, progress() as bar:
        task = bar.add_task(f"{scheme} {Path(video).name}", total=frames or info.frame_count)

        def flush() -> None:
            chunk = camera.encode(buffer, first)
            writer.write(chunk.encoded.packets)
            chunks.append({
                "first_frame": first, "frames": len(buffer), "bytes": chunk.encoded.nbytes,
                "high_fraction": chunk.high_fraction, "selector_ms": 1000 * chunk.policy_s, "encode_ms": 1000 * chunk.encode_s,
            })

        for frame in source:
            if not buffer:
                first = frame.index
            buffer.append(frame.image)
            if len(buffer) == k:
                flush()
                buffer = []
            bar.advance(task)
        if buffer:
            flush()
    n = sum(c["frames"] for c in chunks)
    if n == 0:
        raise EdgevaError(f"{video}: no frames to stream")
    nbytes = sum(c["bytes"] for c in chunks)
    stats = {
        "scheme": scheme, "bytes": nbytes, "frames": n, "kbps": nbytes * 8 / 1000 / (n / info.fps),
        "camera_ms_per_frame": sum(c["selector_ms"] + c["encode_ms"] for c in chunks) / n,
        "high_fraction": float(np.mean([c["high_fraction"] for c in chunks])), "chunks": chunks,
    }
    write_json(json_out, stats)
    console.print(
        f"{n} frames in {len(chunks)} chunks -> {out}: {nbytes} bytes, {stats['kbps']:.1f} kbps, "
        f"{100 * stats['high_fraction']:.1f}% blocks high, camera {stats['camera_ms_per_frame']:.1f} ms/frame"
    )


@app.command()
def accgrad(
    video: Annotated[str, typer.Argument(help="Video file or sample name.")],
    out: Annotated[Path, typer.Option(help="Output .npz: accgrad (N, rows, cols), frames, and the masks.")],
    model: Annotated[str, typer.Option(help="Final DNN.")] = "yolox-nano",
    frames: Annotated[int, typer.Option(help="Number of frames (from the start).")] = 20,
    crf_low: Annotated[int, typer.Option(help="Low quality L.")] = 40,
    threshold: Annotated[float, typer.Option(help="Mask: AccGrad / (its 99th percentile) >= threshold.")] = 0.4,
    png: Annotated[Path | None, typer.Option(help="Write overlays (frame, AccGrad heat, mask) into this folder.")] = None,
) -> None:
    """Compute AccGrad maps and ground-truth masks for inspection."""
    from edgeva.accmpeg.accgrad import compute_accgrad
    from edgeva.accmpeg.train import ground_truth_masks
    from edgeva.models import create_detector
    from edgeva.video import read_frames
    from edgeva.viz import draw_detections, overlay_block_map

    path = assets.resolve_video(video)
    detector = create_detector(model)
    indices = list(range(frames))
    with progress() as bar:
        task = bar.add_task(f"AccGrad {Path(video).name}", total=frames)
        maps = compute_accgrad(path, detector, indices, crf_low=crf_low, on_frame=lambda _i: bar.advance(task))
    stack = np.stack([maps[i] for i in indices])
    scale = float(np.percentile(stack, 99))
    masks = ground_truth_masks(stack, scale, threshold)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, accgrad=stack, frames=np.array(indices), masks=masks, scale=scale, threshold=threshold)
    except OSError as exc:
        raise EdgevaError(f"{out}: cannot write ({exc.strerror})") from None
    if png:
        png.mkdir(parents=True, exist_ok=True)
        images = read_frames(path, frames)
        for i, image in zip(indices, images, strict=True):
            boxes = draw_detections(image, detector.detect([image])[0].above(0.4))
            heat = overlay_block_map(image, np.sqrt(stack[i] / max(scale, 1e-12)).clip(0, 1) * (stack[i].max() > 0))
            mask = overlay_block_map(image, masks[i].astype(np.float32), color=(40, 255, 40))
            cv2.imwrite(str(png / f"{i:06d}.png"), cv2.cvtColor(np.concatenate([boxes, heat, mask], 1), cv2.COLOR_RGB2BGR))
    console.print(f"{frames} frames -> {out}; {100 * masks.mean():.1f}% of blocks above threshold" + (f"; overlays in {png}" if png else ""))


@selector_app.command("train")
def selector_train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write.")],
    videos: Annotated[list[str], typer.Option("--videos", help="Training videos (repeat, or separate by commas).")],
    model: Annotated[str, typer.Option(help="Final DNN whose AccGrad the selector learns.")] = "yolox-nano",
    frames_per_video: Annotated[int, typer.Option(help="Frames sampled evenly from each video.")] = 500,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 15,
    val_fraction: Annotated[float, typer.Option(help="Last fraction of each video's frames held out.")] = 0.1,
    threshold: Annotated[float, typer.Option(help="Ground truth: AccGrad / scale >= threshold.")] = 0.4,
    backbone: Annotated[str, typer.Option(help="yolox-nano-fpn, yolox-nano or shufflenetv2.")] = "yolox-nano-fpn",
    crf_high: Annotated[int, typer.Option(help="High quality.")] = 30,
    crf_low: Annotated[int, typer.Option(help="Low quality (L in AccGrad).")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    executor: ExecutorOpt = "serial",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    scale_per_video: Annotated[bool, typer.Option("--scale-per-video", help="Each video's ground truth from its own AccGrad p99 (docs/accmpeg-selector.md).")] = False,
    finetune_stages: Annotated[int, typer.Option(help="Also train the backbone's last N stages (the FPN neck counts as one) at --finetune-lr; 0: the head only.")] = 0,
    finetune_lr: Annotated[float, typer.Option(help="Learning rate of the fine-tuned backbone stages.")] = 2e-4,
    degrade: Annotated[int, typer.Option(help="Per training frame, N copies degraded as a camera's input (noise, exposure, blur, JPEG), clean masks.")] = 0,
) -> None:
    """Generate (or reuse cached) AccGrad masks and train a quality selector."""
    from edgeva.accmpeg.selector import save_selector
    from edgeva.accmpeg.train import TrainConfig, train_selector

    runner, _device = build_executor(executor, address=ray_address, workers=workers, device="cpu")

    names = split_list(videos)
    writable(out)
    cfg = TrainConfig(
        videos=names, model=model, frames_per_video=frames_per_video, epochs=epochs, val_fraction=val_fraction,
        accgrad_threshold=threshold, crf_high=crf_high, crf_low=crf_low, seed=seed, backbone=backbone,
        scale_per_video=scale_per_video, finetune_stages=finetune_stages, finetune_lr=finetune_lr, degrade_variants=degrade,
        log=lambda m: console.print(m, markup=False),
    )
    start = time.perf_counter()
    with progress() as bar:
        def stage(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        selector = train_selector(cfg, on_stage=stage, executor=runner)
    save_selector(selector, out)
    meta = selector.meta
    console.print(
        f"selector -> {out} ({time.perf_counter() - start:.0f} s): final DNN {meta.final_dnn}, CRF {meta.crf_high}/{meta.crf_low}, "
        f"val recall {meta.val_recall:.3f} precision {meta.val_precision:.3f} (epoch {meta.best_epoch})"
    )


@selector_app.command("eval")
def selector_eval(
    selector: Annotated[Path, typer.Argument(help="Selector checkpoint.")],
    videos: Annotated[list[str], typer.Option("--videos", help="Videos to check it on (repeat or comma-separate).")],
    frames: Annotated[int, typer.Option(help="Frames per video, spread evenly.")] = 60,
    alpha: Annotated[float, typer.Option(help="Decision threshold.")] = 0.2,
    fraction: Annotated[float | None, typer.Option(help="Instead of --alpha: the top fraction of blocks (selectors compared at the same selected fraction).")] = None,
    own: Annotated[bool, typer.Option("--own-scale", help="Ground truth scaled by each video's own AccGrad p99 (one truth for any selector) instead of the selector's training scale.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")] = None,
) -> None:
    """Recall/precision of the selector's high-quality blocks against ground-truth AccGrad masks."""
    from edgeva.accmpeg.selector import load_selector
    from edgeva.accmpeg.train import evaluate_selector, own_scale
    from edgeva.cli.bench import print_rows

    model = load_selector(selector, warn=_warn)
    rows = []
    with progress() as bar:
        for video in split_list(videos):
            task = bar.add_task(f"AccGrad {Path(video).name}", total=frames)
            scale = own_scale(video, frames=frames, model=model.meta.final_dnn, crf_low=model.meta.crf_low) if own else None
            rows.append({"video": Path(video).stem, **evaluate_selector(model, video, frames=frames, alpha=alpha, fraction=fraction, scale=scale,
                                                                        on_frame=lambda _i, t=task: bar.advance(t))})
    at = f"the top {fraction:g} of blocks" if fraction is not None else f"alpha {alpha}"
    print_rows(f"{selector.name} (trained on {', '.join(model.meta.train_videos)}) at {at}", rows, json_out)



@bench_app.command("camera")
def bench_camera_cmd(
    selector: Annotated[Path | None, typer.Option(help="Selector checkpoint (default: ImageNet backbone with an untrained head; the cost is the same).")] = None,
    frames: Annotated[int, typer.Option(help="Frames to stream per run.")] = 100,
    k: Annotated[int, typer.Option(help="Selector every k frames.")] = 10,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write rows as JSON.")] = None,
) -> None:
    """AccMPEG camera cost per frame at 1280x720 on one thread: selector every k frames + ROI encode."""
    from edgeva.bench.camera import bench_camera
    from edgeva.cli.bench import print_rows

    print_rows(f"AccMPEG camera at 1280x720, 1 thread, k={k}", bench_camera(selector=selector, frames=frames, k=k), json_out)
