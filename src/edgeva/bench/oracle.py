"""Why the oracle map does or does not beat uniform quality, one hypothesis per variant.

Each variant is a set of ``accmpeg-oracle`` configurations (true AccGrad block maps) encoded
at full resolution and frame rate; its bytes/F1 frontier is compared with uniform CRF's
frontier under the same encoder settings and chunk length, at one F1 (the target where both
reach it, else the highest both reach). Variants: the paper's quality pairs, a higher and a lower
pair (hard and easy content), dilation 0 and 2, a three-level map, 30-frame chunks (fewer
keyframes, and the first frame's map serves more frames as objects move).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from edgeva import assets
from edgeva.eval.goals import bytes_at_f1
from edgeva.eval.harness import summarize
from edgeva.models import create_detector
from edgeva.net import Link
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.video import EncoderSettings, open_video

__all__ = ["bench_oracle", "VARIANTS", "UNIFORM_CRFS"]

UNIFORM_CRFS = (22, 26, 30, 34, 38, 42, 46, 50)
_MASSES = (0.3, 0.5, 0.8)
# name -> (chunk length, oracle configurations)
VARIANTS: dict[str, tuple[int, list[dict]]] = {
    "paper pairs": (10, [{"crf_high": h, "crf_low": lo, "mass": m} for h, lo in ((30, 40), (36, 46)) for m in _MASSES]),
    "high pair 24/34": (10, [{"crf_high": 24, "crf_low": 34, "mass": m} for m in _MASSES[:2]]),
    "low pair 42/51": (10, [{"crf_high": 42, "crf_low": 51, "mass": m} for m in _MASSES[:2]]),
    "gamma 0": (10, [{"crf_high": 30, "crf_low": 40, "mass": m, "gamma": 0} for m in _MASSES[:2]]),
    "gamma 2": (10, [{"crf_high": 30, "crf_low": 40, "mass": m, "gamma": 2} for m in _MASSES[:2]]),
    "three levels": (10, [{"crf_high": h, "crf_low": lo, "mass": 0.3, "mid_mass": 0.8} for h, lo in ((30, 40), (36, 46))]),
    "30-frame chunks": (30, [{"crf_high": 30, "crf_low": 40, "mass": m} for m in _MASSES[:2]]),
}


def _replay(ctx: SchemeContext, frames: list, chunk: int, name: str, config: dict) -> list:
    scheme = create_scheme(name, ctx, **config)
    scheme.reset()
    return [scheme.process(frames[i : i + chunk], i) for i in range(0, len(frames), chunk)]


class _Video:
    """One video's frames, reference and replays (uniform curves cached per chunk length)."""

    def __init__(self, spec: str, frames: int, detector, on_step: Callable[[str], None] | None, crfs: Sequence[int]):
        source = open_video(assets.resolve_video(spec), limit=frames)
        self.name, self.images, self.fps = Path(assets.resolve_video(spec)).stem, [f.image for f in source], source.info.fps
        self.ctx = SchemeContext(server=Server(detector), settings=EncoderSettings(fps=self.fps), frame_size=self.images[0].shape[:2], fps=self.fps)
        self.reference = detector.detect(self.images)
        self.on_step = on_step
        self.uniform: dict[int, list[dict]] = {}
        self.crfs = crfs

    def measure(self, chunk: int, name: str, config: dict) -> dict:
        if self.on_step:
            self.on_step(f"{self.name} chunk {chunk} {name} {config}")
        outcomes = _replay(self.ctx, self.images, chunk, name, config)
        return {**summarize(outcomes, self.reference, fps=self.fps, link=Link()), "config": config}

    def uniform_curve(self, chunk: int) -> list[dict]:
        if chunk not in self.uniform:
            self.uniform[chunk] = [self.measure(chunk, "uniform", {"crf": c}) for c in self.crfs]
        return self.uniform[chunk]


def bench_oracle(
    *, videos: Sequence[str], frames: int = 40, variants: Sequence[str] | None = None, target_f1: float = 0.9,
    uniform_crfs: Sequence[int] = UNIFORM_CRFS, on_step: Callable[[str], None] | None = None,
) -> list[dict]:
    """One row per (video, variant): F1 level compared, uniform and oracle bytes there, saving."""
    detector = create_detector("yolox-nano", score_threshold=0.1)
    rows = []
    for spec in videos:
        video = _Video(spec, frames, detector, on_step, uniform_crfs)
        for variant in variants or list(VARIANTS):
            chunk, configs = VARIANTS[variant]
            uniform = video.uniform_curve(chunk)
            oracle = [video.measure(chunk, "accmpeg-oracle", c) for c in configs]
            level = min(target_f1, max(r["f1"] for r in uniform), max(r["f1"] for r in oracle))
            ours, theirs = bytes_at_f1(oracle, level), bytes_at_f1(uniform, level)
            best = min((r for r in oracle if r["f1"] >= level), key=lambda r: r["bytes"])
            rows.append({
                "video": video.name, "variant": variant, "chunk": chunk, "f1": level,
                "uniform_kb": theirs / 1000, "oracle_kb": ours / 1000, "saving_pct": 100 * (1 - ours / theirs),
                "cheapest_oracle": ", ".join(f"{k}={v}" for k, v in best["config"].items()), "high_fraction": best["high_fraction"],
            })
    return rows
