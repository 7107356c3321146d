"""``edgeva demo``: the main job on the bundled sample videos."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from edgeva import assets
from edgeva.cli.app import app, console, track
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.video import QualityMap, boxes_to_mask, decode_chunk, encode_chunk, read_frames


@app.command()
def demo(
    video: Annotated[str, typer.Option(help="Sample video name or path.")] = "store-aisle-detection",
    frames: Annotated[int, typer.Option(help="Frames to use.")] = 60,
) -> None:
    """Detect objects, then compare uniform encodes with an ROI encode around the detections."""
    images = read_frames(assets.resolve_video(video), frames)
    detector = create_detector("yolox-nano")
    reference = detector.detect(images)
    size = images[0].shape[:2]
    table = Table("encoding", "KB", "F1 vs original", title=f"{video}: {len(images)} frames, 10-frame chunks, YOLOX-Nano")
    schemes = {f"uniform CRF {c}": (lambda i, c=c: c) for c in (30, 36, 40)}
    schemes["ROI: boxes of chunk's first frame at CRF 30, rest 40"] = lambda i: QualityMap.two_level(
        boxes_to_mask(reference[i].above(0.3).boxes, size, gamma=1), crf_high=30, crf_low=40
    )
    for name, quality_for in track(schemes.items(), "encoding", total=len(schemes)):
        decoded, nbytes = [], 0
        for i in range(0, len(images), 10):
            chunk = encode_chunk(images[i : i + 10], quality_for(i), first_frame=i)
            nbytes += chunk.nbytes
            decoded += decode_chunk(chunk)
        table.add_row(name, f"{nbytes / 1000:.1f}", f"{f1_score(detector.detect(decoded), reference)['f1']:.3f}")
    console.print(table)
