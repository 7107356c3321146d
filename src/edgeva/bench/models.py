"""Detector latency (ms per frame) and peak memory, each configuration in a fresh process."""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time

__all__ = ["bench_models", "CONFIGS"]

CONFIGS = [
    ("yolox-nano", (416, 416)),
    ("yolox-nano", (448, 768)),
    ("fastestdet", (352, 352)),
]


def _run(name: str, input_size: tuple[int, int], threads: int, iterations: int, queue: mp.Queue) -> None:
    import torch

    from edgeva.models import create_detector

    torch.set_num_threads(threads)
    model = create_detector(name, input_size=input_size)
    x = torch.rand(1, 3, *input_size) * 255  # already at input size: preprocess only pads/permutes
    times = []
    with torch.inference_mode():
        for i in range(iterations + 3):
            start = time.perf_counter()
            raw, box = model.raw_outputs(x)
            model.decode(raw, box)
            if i >= 3:  # warm-up runs excluded
                times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((1000 * statistics.median(times), peak_mb))


def bench_models(*, threads: tuple[int, ...] = (1, 2), iterations: int = 20) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for name, size in CONFIGS:
        for n in threads:
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(name, size, n, iterations, queue))
            proc.start()
            ms, peak = queue.get(timeout=600)
            proc.join()
            rows.append({"model": name, "input": f"{size[1]}x{size[0]}", "threads": n, "ms_per_frame": ms, "fps": 1000 / ms, "peak_rss_mb": peak})
    return rows
