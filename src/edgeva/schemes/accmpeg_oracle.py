"""The AccMPEG ceiling: AccMPEG's camera and codec with the block map of each chunk taken from
the true AccGrad of the chunk's first sent frame, computed with the final DNN itself.

No camera has the final DNN (that is why AccMPEG trains a selector), so this scheme is not
deployable: it bounds what any selector can reach with the same encoding. Per chunk, the
first sent frame's AccGrad (:func:`~edgeva.accmpeg.accgrad.accgrad`: H = the original frame,
L = the same frame inside the chunk encoded at ``crf_low``) ranks the blocks; the fewest
blocks holding ``mass`` of the frame's AccGrad are high quality, grown by ``gamma`` blocks; with
``mid_mass`` the blocks holding the next share up to that mass get a middle quality (a
three-level map). The map is given to the camera for free: its computation is not counted as
camera time.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgeva.accmpeg.accgrad import accgrad, low_quality
from edgeva.accmpeg.camera import DEFAULT_GAMMA
from edgeva.schemes.accmpeg import FILTER_TARGET, composed_knobs, composed_sweep
from edgeva.schemes.base import SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, FrameSampling
from edgeva.video import QualityMap, dilate

__all__ = ["AccMPEGOracle", "ORACLE_MASSES", "mass_mask"]

ORACLE_MASSES = (0.3, 0.5, 0.8)
_maps: dict[tuple, np.ndarray] = {}  # AccGrad of a chunk's first frame, shared by the configurations of a sweep


def mass_mask(accgrad_map: np.ndarray, mass: float) -> np.ndarray:
    """The fewest blocks holding at least ``mass`` of the map's total AccGrad (none if it is 0)."""
    flat = np.asarray(accgrad_map, dtype=np.float64).ravel()
    total = flat.sum()
    mask = np.zeros(flat.shape, dtype=bool)
    if total <= 0:
        return mask.reshape(accgrad_map.shape)
    order = np.argsort(-flat, kind="stable")
    count = int(np.searchsorted(np.cumsum(flat[order]), mass * total) + 1)
    mask[order[:count]] = True
    return mask.reshape(accgrad_map.shape)


@register_scheme
class AccMPEGOracle(FrameSampling):
    name = "accmpeg-oracle"
    description = ("AccMPEG ceiling: block map from the final DNN's true AccGrad of each chunk's first frame "
                   "(not deployable: a camera has no final DNN; the map is not counted as camera time)")
    profiles = True  # the composed Reducto filter profiles on other videos
    bound = True

    def __init__(self, ctx: SchemeContext, *, mass: float = 0.5, gamma: int = DEFAULT_GAMMA, crf_high: int = 30, crf_low: int = 40,
                 fps_divisor: int = 1, scale: float = 1.0, filter_feature: str | None = None, filter_target: float = FILTER_TARGET,
                 mid_mass: float | None = None):
        if not 0.0 < mass <= 1.0 or (mid_mass is not None and not mass < mid_mass <= 1.0):
            from edgeva.errors import ConfigError

            raise ConfigError(f"accmpeg-oracle: mass={mass}, mid_mass={mid_mass}: need 0 < mass < mid_mass <= 1")
        super().__init__(ctx, mass=mass, gamma=gamma, crf_high=crf_high, crf_low=crf_low, fps_divisor=fps_divisor, scale=scale,
                         filter_feature=filter_feature, filter_target=filter_target, mid_mass=mid_mass)
        self.mass, self.gamma, self.crf_high, self.crf_low, self.mid_mass = mass, gamma, crf_high, crf_low, mid_mass
        composed_knobs(self, ctx, fps_divisor=fps_divisor, scale=scale, filter_feature=filter_feature, filter_target=filter_target)
        self.reset()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        full_rate = [{"mass": m, "crf_high": high, "crf_low": low} for high, low in QUALITY_PAIRS for m in ORACLE_MASSES]
        # The composed knobs with the middle pair only: the ceiling's sweep stays small (demo budget).
        return full_rate + composed_sweep({"mass": 0.5}, pairs=(QUALITY_PAIRS[1],))

    def accgrad_map(self, images: list[np.ndarray]) -> np.ndarray:
        """AccGrad of ``images[0]`` with L = its decoding inside the chunk encoded at ``crf_low``."""
        digest = hashlib.sha1(b"".join(np.ascontiguousarray(i).tobytes() for i in images)).hexdigest()
        key = (digest, self.crf_low, self.ctx.server.detector.name, self.ctx.settings)
        if key not in _maps:
            low = low_quality(images, self.crf_low, self.ctx.settings, chunk=len(images))[0]
            _maps[key] = accgrad(self.ctx.server.detector, [images[0]], [low])[0]
            if len(_maps) > 4096:
                _maps.pop(next(iter(_maps)))
        return _maps[key]

    def encode(self, images: list, first_frame: int) -> tuple[list, QualityMap, float]:
        grid = self.accgrad_map(images)
        high = dilate(mass_mask(grid, self.mass), self.gamma)
        if self.mid_mass is None:
            return images, QualityMap.two_level(high, crf_high=self.crf_high, crf_low=self.crf_low), 0.0
        levels = np.full(grid.shape, self.crf_low, dtype=np.int16)
        levels[dilate(mass_mask(grid, self.mid_mass), self.gamma)] = (self.crf_high + self.crf_low) // 2
        levels[high] = self.crf_high
        return images, QualityMap(levels, base=self.crf_low), 0.0
