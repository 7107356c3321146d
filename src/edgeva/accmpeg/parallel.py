"""AccGrad generation as independent tasks, for an executor (:mod:`edgeva.executor`).

Selector training needs one AccGrad map per sampled frame: a forward and a backward pass of
the final DNN each, the expensive and embarrassingly parallel part of training. The frames
of a video are split into groups of whole chunks (the low-quality version of a frame is its
decoding inside its chunk), each group a task on an :class:`AccGradWorker` that loads the
final DNN once. Groups end where a batch ends, so every frame is batched with the same
neighbour as in one serial pass and the maps are the same whatever the executor. Workers
write the per-frame cache themselves (atomic files; shared storage across machines).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from edgeva.accmpeg.accgrad import AccGradCache, compute_accgrad
from edgeva.models import create_detector

__all__ = ["AccGradWorker", "task_groups", "uncached"]


class AccGradWorker:
    """The final DNN loaded once; AccGrad maps of groups of frames on demand.

    Args:
        model: the final DNN's name.
        threads: torch threads (the driver's, so maps match a serial run).
        device: torch device (see :mod:`edgeva.device`).
    """

    def __init__(self, model: str, threads: int, device: str = "cpu"):
        torch.set_num_threads(threads)
        self.detector = create_detector(model, device=device)

    def maps(self, video: str, indices: Sequence[int], crf_low: int, batch_size: int) -> dict[int, np.ndarray]:
        """Task: AccGrad maps of frames ``indices`` of ``video`` (cached per frame)."""
        return compute_accgrad(video, self.detector, indices, crf_low=crf_low, batch_size=batch_size)


def uncached(video: str, model: str, crf_low: int, indices: Sequence[int]) -> list[int]:
    """The frames of ``indices`` whose map is not in the cache yet (sorted)."""
    cache = AccGradCache(video, model, crf_low)
    return [i for i in sorted(set(indices)) if not (cache.folder / f"{i:07d}.npy").exists()]


def task_groups(indices: Sequence[int], *, chunk: int, batch_size: int, tasks: int) -> list[list[int]]:
    """Split sorted frame ``indices`` into at most ``tasks`` groups of about equal size, each
    made of whole chunks and, but for the last, a multiple of ``batch_size`` frames."""
    indices = sorted(set(indices))
    if not indices:
        return []
    target = max(1, -(-len(indices) // max(tasks, 1)))
    groups: list[list[int]] = [[]]
    for position, index in enumerate(indices):
        groups[-1].append(index)
        following = indices[position + 1] if position + 1 < len(indices) else None
        at_boundary = following is not None and following // chunk != index // chunk and len(groups[-1]) % batch_size == 0
        if at_boundary and len(groups[-1]) >= target and len(groups) < tasks:
            groups.append([])
    return groups
