"""``edgeva info``, ``detect`` and ``encode``: the foundation commands."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import edgeva
from edgeva import assets
from edgeva.cli.app import app, console, progress, write_json
from edgeva.device import DEVICE_HELP, resolve_device
from edgeva.errors import ConfigError, EdgevaError
from edgeva.models import create_detector, list_detectors
from edgeva.video import (
    EncoderSettings,
    Mp4Writer,
    QualityMap,
    StreamEncoder,
    open_video,
    rects_to_map,
)
from edgeva.video.codec import roi_codecs
from edgeva.viz import draw_detections

__all__ = ["parse_roi"]


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False) -> None:
    """Version, codecs usable with ROI, models and sample videos found."""
    found = assets.list_assets()
    payload = {
        "version": edgeva.__version__,
        "roi_codecs": roi_codecs(),
        "assets_dir": os.environ.get("EDGEVA_ASSETS", ""),
        "videos": {Path(n).stem: str(p) for n, p in found.items() if n.endswith(".mp4") and p},
        "weights": {n: str(p) if p else None for n, p in found.items() if not n.endswith(".mp4")},
    }
    weights_for = {"yolox-nano": "yolox_nano.onnx", "fastestdet": "fastestdet_coco.pth"}
    payload["models"] = {name: bool(found.get(weights_for.get(name, ""))) for name in list_detectors()}
    if as_json:
        console.print_json(json.dumps(payload))
        return
    console.print(f"edgeva {payload['version']}   ROI codecs: {', '.join(payload['roi_codecs'])}")
    table = Table("model", "weights found")
    for name, ok in payload["models"].items():
        table.add_row(name, "yes" if ok else "no")
    console.print(table)
    table = Table("sample video", "path")
    for name, path in payload["videos"].items():
        table.add_row(name, path)
    console.print(table)


@app.command()
def detect(
    video: Annotated[str, typer.Argument(help="Video file, image pattern (dir/%06d.png), URL or sample name.")],
    model: Annotated[str, typer.Option(help="Detector name (see `edgeva info`).")] = "yolox-nano",
    frames: Annotated[int | None, typer.Option(help="Process at most this many frames.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write detections as JSON here.")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Write a video with boxes drawn here (.mp4).")] = None,
    score: Annotated[float, typer.Option(help="Score threshold.")] = 0.3,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Run a detector over a video; print a summary, optionally write JSON and an annotated video."""
    resolved = resolve_device(device)
    source = open_video(assets.resolve_video(video), limit=frames)
    detector = create_detector(model, score_threshold=score, device=resolved)
    records, writer, encoder = [], None, None
    counts: dict[str, int] = {}
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"{model} on {Path(video).name}", total=frames or source.info.frame_count)
        for frame in source:
            dets = detector.detect([frame.image])[0]
            records.append({"frame": frame.index, "detections": dets.to_json()})
            for label in dets.labels:
                counts[label] = counts.get(label, 0) + 1
            if annotate:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    settings = EncoderSettings(fps=source.info.fps)
                    writer = Mp4Writer(annotate, codec="h264", width=w, height=h, fps=source.info.fps)
                    encoder = StreamEncoder(w, h, crf=23, settings=settings)
                writer.write(encoder.encode([draw_detections(frame.image, dets)]))
            bar.advance(task)
    if writer is not None:
        writer.write(encoder.close())
        writer.close()
    elapsed = time.perf_counter() - start
    write_json(json_out, records)
    console.print(f"{len(records)} frames in {elapsed:.1f} s ({len(records) / max(elapsed, 1e-9):.1f} fps); objects: "
                  + (", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"))
    if json_out:
        console.print(f"detections -> {json_out}")
    if annotate:
        console.print(f"annotated video -> {annotate}")


def parse_roi(spec: str, frame_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """``"x,y,w,h[;x,y,w,h...]"`` in pixels -> rectangles inside the frame.

    Raises:
        ConfigError: malformed numbers, non-positive size, or a rectangle outside the frame.
    """
    rects = []
    height, width = frame_size
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            x, y, w, h = (int(float(v)) for v in part.split(","))
        except ValueError:
            raise ConfigError(f"--roi {part!r}: expected four numbers x,y,w,h") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x >= width or y >= height:
            raise ConfigError(f"--roi {part!r}: must have positive size and start inside the {width}x{height} frame")
        rects.append((x, y, min(w, width - x), min(h, height - y)))
    return rects


@app.command()
def encode(
    video: Annotated[str, typer.Argument(help="Video file, image pattern, URL or sample name.")],
    out: Annotated[Path, typer.Option(help="Output video file (.mp4 or .mkv).")],
    codec: Annotated[str, typer.Option(help="h264, hevc or vp9.")] = "h264",
    crf_low: Annotated[int, typer.Option(help="CRF outside the ROI (the base quality).")] = 40,
    crf_high: Annotated[int, typer.Option(help="CRF inside the ROI.")] = 30,
    roi: Annotated[list[str] | None, typer.Option(help="x,y,w,h in pixels; repeat or separate by ';'.")] = None,
    frames: Annotated[int | None, typer.Option(help="Encode at most this many frames.")] = None,
    preset: Annotated[str, typer.Option(help="x264/x265 preset.")] = "veryfast",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write statistics as JSON here.")] = None,
) -> None:
    """Encode a video as one stream, with regions of interest at higher quality."""
    source = open_video(assets.resolve_video(video), limit=frames)
    info_ = source.info
    if info_.width % 2 or info_.height % 2:
        raise ConfigError(f"{video}: frame size {info_.width}x{info_.height} must be even to encode")
    rects = [r for spec in roi or [] for r in parse_roi(spec, (info_.height, info_.width))]
    settings = EncoderSettings(codec=codec, preset=preset, fps=info_.fps)
    if rects:
        mask = rects_to_map(rects, (info_.height, info_.width), True)
        quality = QualityMap.two_level(mask, crf_high=crf_high, crf_low=crf_low)
    else:
        quality = None
    encoder = StreamEncoder(info_.width, info_.height, crf=crf_low, settings=settings)
    nbytes = count = 0
    encode_s = 0.0
    with Mp4Writer(out, codec=codec, width=info_.width, height=info_.height, fps=info_.fps) as writer, progress() as bar:
        task = bar.add_task(f"encoding {Path(video).name}", total=frames or info_.frame_count)
        for frame in source:
            t0 = time.perf_counter()
            packets = encoder.encode([frame.image], quality)
            encode_s += time.perf_counter() - t0
            writer.write(packets)
            nbytes += sum(len(p.data) for p in packets)
            count += 1
            bar.advance(task)
        t0 = time.perf_counter()
        packets = encoder.close()
        encode_s += time.perf_counter() - t0
        writer.write(packets)
        nbytes += sum(len(p.data) for p in packets)
    if count == 0:
        raise EdgevaError(f"{video}: no frames to encode")
    stats = {
        "bytes": nbytes,
        "frames": count,
        "kbps": nbytes * 8 / 1000 / (count / info_.fps),
        "roi_fraction": quality.high_fraction if quality else 0.0,
        "encode_fps": count / max(encode_s, 1e-9),
        "codec": codec,
        "crf_low": crf_low,
        "crf_high": crf_high if rects else None,
        "out": str(out),
    }
    write_json(json_out, stats)
    console.print(
        f"{count} frames -> {out}: {nbytes} bytes, {stats['kbps']:.1f} kbps, ROI {100 * stats['roi_fraction']:.1f}% of blocks, "
        f"{stats['encode_fps']:.1f} fps encode"
    )
