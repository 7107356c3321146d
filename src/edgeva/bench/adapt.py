"""Online selector adaptation (``accmpeg``'s ``adapt_every``) against the frozen selector,
on the first and the last half of each video.

Per video and half: the selector's block precision against the true AccGrad masks (the
selector's own scale and threshold, every 5th frame scored with the weights the camera held
when it saw it) at recall 0.8 and at the top 10% of blocks; and the bytes AccMPEG's bytes/F1
frontier needs (full rate, every quality pair and alpha) at the F1 target or, where a
frontier does not reach it, at the highest F1 both reach; adaptation's uploaded frames and
downloaded weights are inside its bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeva import assets
from edgeva.accmpeg.accgrad import compute_accgrad
from edgeva.accmpeg.adapt import AdaptOptions, SelectorAdaptation
from edgeva.accmpeg.train import block_precision_recall, ground_truth_masks
from edgeva.eval.goals import bytes_at_f1
from edgeva.eval.harness import summarize
from edgeva.models import Detector, create_detector
from edgeva.net import Link
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.schemes.accmpeg import ACCMPEG_ALPHAS, cached_selector
from edgeva.schemes.common import QUALITY_PAIRS
from edgeva.video import EncoderSettings, open_video

__all__ = ["bench_adapt", "precision_by_half", "SCORED_EVERY"]

SCORED_EVERY = 5  # every this-th frame is scored for selector precision


def precision_by_half(selector, detector: Detector, path: str, frames: Sequence[np.ndarray], options: AdaptOptions, *, chunk: int = 10) -> list[dict]:
    """Selector precision on each half of ``frames`` (first, last) when the camera adapts
    with ``options`` (``every`` 0: the frozen selector)."""
    camera = copy.deepcopy(selector)
    adaptation = SelectorAdaptation(camera, detector, options)
    scored = list(range(0, len(frames), SCORED_EVERY))
    meta = selector.meta
    maps = compute_accgrad(path, detector, scored, crf_low=meta.crf_low, chunk=chunk)
    probabilities = {}
    for start in range(0, len(frames), chunk):
        for i in (i for i in scored if start <= i < start + chunk):
            probabilities[i] = camera.predict([frames[i]])[0]
        adaptation.after_chunk(start // chunk, frames[start : start + chunk])
    rows = []
    half = chunk * max(1, -(-len(frames) // chunk) // 2)  # at a chunk boundary, as the replays' halves
    for name, part in (("first", [i for i in scored if i < half]), ("last", [i for i in scored if i >= half])):
        p = np.stack([probabilities[i] for i in part])
        truth = ground_truth_masks(np.stack([maps[i] for i in part]), meta.accgrad_scale, meta.accgrad_threshold)
        at_recall, at_share = block_precision_recall(p, truth, recall=0.8), block_precision_recall(p, truth, fraction=0.1)
        rows.append({"half": name, "truth_fraction": at_recall["truth_fraction"], "p_at_r80": at_recall["precision"], "p_at_10pct": at_share["precision"]})
    return rows


def _halves(outcomes: list, reference: list, fps: float) -> list[dict]:
    """The replay summarised on its first and its last half of chunks."""
    h = len(outcomes) // 2 or 1
    cut = sum(o.frames for o in outcomes[:h])
    out = []
    for part, ref in ((outcomes[:h], reference[:cut]), (outcomes[h:], reference[cut:])):
        row = summarize(part, ref, fps=fps, link=Link())
        row["adapt_bytes"] = row["adapt_up_bytes"] + row["downlink_bytes"]
        out.append(row)
    return out


def _curves(ctx: SchemeContext, frames: list, chunk: int, adapt: dict, reference: list, fps: float, on_step) -> list[list[dict]]:
    """Per half, AccMPEG's full-rate records (every quality pair and alpha) with ``adapt``."""
    halves: list[list[dict]] = [[], []]
    for high, low in QUALITY_PAIRS:
        for alpha in ACCMPEG_ALPHAS:
            on_step(f"  accmpeg alpha={alpha} crf {high}/{low} {adapt or 'frozen'}")
            scheme = create_scheme("accmpeg", ctx, alpha=alpha, crf_high=high, crf_low=low, **adapt)
            scheme.reset()
            outcomes = [scheme.process(frames[i : i + chunk], i) for i in range(0, len(frames), chunk)]
            for rows, row in zip(halves, _halves(outcomes, reference, fps), strict=True):
                rows.append(row)
    return halves


def _at_level(off: list[dict], on: list[dict], target: float) -> tuple[float, float | None, float | None, float]:
    level = min(target, max(r["f1"] for r in off), max(r["f1"] for r in on))
    best_on = min((r for r in on if r["f1"] >= level), key=lambda r: r["bytes"])
    return level, bytes_at_f1(off, level), bytes_at_f1(on, level), best_on["adapt_bytes"]


def bench_adapt(
    *, selector: str, videos: Sequence[str], frames: int = 100, every: int = 1, layers: str = "last", target_f1: float = 0.9, chunk: int = 10,
    on_step: Callable[[str], None] = lambda _m: None,
) -> list[dict]:
    """One row per (video, half): F1 compared, bytes without and with adaptation (all costs),
    adaptation's own bytes there, selector precision without and with adaptation."""
    model = cached_selector(selector)
    options = AdaptOptions(every=every, layers=layers)
    detector = create_detector(model.meta.final_dnn, score_threshold=0.1)
    rows = []
    for spec in videos:
        path = assets.resolve_video(spec)
        source = open_video(path, limit=frames)
        images, fps, name = [f.image for f in source], source.info.fps, Path(path).stem
        on_step(f"{name}: {len(images)} frames")
        frozen = precision_by_half(model, detector, path, images, AdaptOptions(), chunk=chunk)
        adapted = precision_by_half(model, detector, path, images, options, chunk=chunk)
        ctx = SchemeContext(server=Server(detector), settings=EncoderSettings(fps=fps), frame_size=images[0].shape[:2], fps=fps,
                            checkpoints={"selector": selector}, chunk=chunk)
        reference = detector.detect(images)
        off = _curves(ctx, images, chunk, {}, reference, fps, on_step)
        on = _curves(ctx, images, chunk, {"adapt_every": every, "adapt_layers": layers}, reference, fps, on_step)
        for h in range(2):
            level, kb_off, kb_on, adapt_bytes = _at_level(off[h], on[h], target_f1)
            rows.append({
                "video": name, "half": frozen[h]["half"], "f1": level, "kb_frozen": kb_off / 1000, "kb_adapted": kb_on / 1000,
                "adapt_kb": adapt_bytes / 1000, "truth_fraction": frozen[h]["truth_fraction"],
                "p_r80_frozen": frozen[h]["p_at_r80"], "p_r80_adapted": adapted[h]["p_at_r80"],
                "p_10pct_frozen": frozen[h]["p_at_10pct"], "p_10pct_adapted": adapted[h]["p_at_10pct"],
            })
    return rows
