"""docs/neuromesh.md's comparison: NeuroMesh against uniform quality on the four demo videos,
through the evaluation harness (same replays, cache, link and final DNN as ``edgeva eval``).

Uniform's sweep is cut to its CRF knob at full resolution and frame rate (7 configurations,
NeuroMesh's own sweep has no resolution or frame-rate knob; `edgeva eval` sweeps all 63 of
uniform's), NeuroMesh's to four of its nine configurations. Prints, per video, each scheme's cheapest configuration reaching F1 0.9, then
NeuroMesh's frontier against uniform's: uniform's bytes interpolated at NeuroMesh's F1 and
uniform's F1 interpolated at NeuroMesh's bytes.

    EDGEVA_ASSETS=../shared/assets .venv/bin/python tools/neuromesh_figures.py mae.pt [frames]
"""

from __future__ import annotations

import sys

import numpy as np

from edgeva.eval.harness import EvalConfig, evaluate
from edgeva.schemes.neuromesh import NeuroMesh
from edgeva.schemes.uniform import UNIFORM_CRFS, Uniform

# Four of NeuroMesh's nine sweep configurations (mask ratio, CRF): the loaded machine replayed
# a 20-frame configuration in 0.5-2 minutes.
NEUROMESH_CONFIGS = ((0.3, 22), (0.3, 30), (0.5, 30), (0.7, 30))
VIDEOS = ("bottle-detection", "store-aisle-detection", "people-detection", "fruit-and-vegetable-detection")


def _frontier(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, best F1 at or below those bytes), increasing."""
    rows = sorted(rows, key=lambda r: r["bytes"])
    nbytes = np.array([r["bytes"] for r in rows], float)
    f1 = np.maximum.accumulate(np.array([r["f1"] for r in rows], float))
    return nbytes, f1


def main(mae: str, frames: int) -> None:
    Uniform.sweep = classmethod(lambda cls, ctx: [{"crf": c, "scale": 1.0, "fps_divisor": 1} for c in UNIFORM_CRFS])
    NeuroMesh.sweep = classmethod(lambda cls, ctx: [{"mask_ratio": r, "crf": c} for r, c in NEUROMESH_CONFIGS])
    cfg = EvalConfig(videos=list(VIDEOS), schemes=["uniform", "neuromesh"], checkpoints={"mae": mae}, frames=frames)
    result = evaluate(cfg, log=print)
    print("| video | scheme | cheapest config at F1 >= 0.9 (else most accurate) | F1 | KB | delay mean s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b in sorted(result.best, key=lambda b: (b["video"], b["scheme"])):
        config = ", ".join(f"{k}={v}" for k, v in b["config"].items())
        mark = "" if b["reaches_target"] else " (< 0.9)"
        print(f"| {b['video']} | {b['scheme']} | {config} | {b['f1']:.3f}{mark} | {b['bytes'] / 1000:.1f} | {b['delay_mean_s']:.3f} |")
    print("\n| video | NeuroMesh config | F1 | KB | uniform KB at that F1 | uniform F1 at those KB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for video in VIDEOS:
        rows = [r for r in result.records if r["video"] == video]
        u_bytes, u_f1 = _frontier([r for r in rows if r["scheme"] == "uniform"])
        for r in sorted((r for r in rows if r["scheme"] == "neuromesh"), key=lambda r: r["bytes"]):
            at_f1 = "-" if r["f1"] > u_f1.max() or r["f1"] < u_f1.min() else f"{np.interp(r['f1'], u_f1, u_bytes) / 1000:.1f}"
            at_bytes = float(np.interp(r["bytes"], u_bytes, u_f1))
            config = ", ".join(f"{k}={v}" for k, v in r["config"].items())
            print(f"| {video} | {config} | {r['f1']:.3f} | {r['bytes'] / 1000:.1f} | {at_f1} | {at_bytes:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
