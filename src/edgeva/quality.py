"""Quality policies: how a camera chooses the encoding quality of each chunk.

A policy maps the frames of a chunk to a :class:`~edgeva.video.QualityMap` (a CRF per 16x16
macroblock) or one CRF for the whole chunk. Policies are registered by name; the AccMPEG
stream command, the evaluation's schemes and the runtime's cameras all build them here from
one typed :class:`QualityOptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edgeva.registry import Registry
from edgeva.video import QualityMap

__all__ = ["QualityPolicy", "QualityOptions", "UniformQuality", "QUALITY_POLICIES", "register_policy", "create_policy", "list_policies"]


@runtime_checkable
class QualityPolicy(Protocol):
    """Chooses the encoding quality of one chunk."""

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> QualityMap | int:
        """Quality for RGB uint8 ``frames`` whose first is source frame ``first_frame``."""
        ...


@dataclass(frozen=True)
class QualityOptions:
    """Every policy's settings; each policy reads the fields it needs."""

    crf: int = 35  # uniform: the CRF of every block
    selector: Path | None = None  # accmpeg: the selector checkpoint
    alpha: float = 0.2  # accmpeg: blocks with probability >= alpha are high quality
    gamma: int | None = None  # accmpeg: dilation in blocks (None: edgeva's measured default)
    crf_high: int | None = None  # accmpeg: None takes the selector's training setting
    crf_low: int | None = None
    final_dnn: str | None = None  # accmpeg: refuse a selector trained for another final DNN
    warn: Callable[[str], None] | None = field(default=None, compare=False)  # allowed mismatches


@dataclass
class UniformQuality:
    """One CRF for every block of every chunk (the standard codec)."""

    crf: int

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> int:
        return self.crf


QUALITY_POLICIES: Registry[Callable[[QualityOptions], QualityPolicy]] = Registry("quality policy")
register_policy = QUALITY_POLICIES.register  # @register_policy(name): factory(QualityOptions) -> QualityPolicy
list_policies = QUALITY_POLICIES.names


def create_policy(name: str, options: QualityOptions = QualityOptions()) -> QualityPolicy:
    """Build a registered policy.

    Raises:
        ConfigError: unknown name, or options the policy cannot use.
    """
    from edgeva.errors import ConfigError

    try:
        factory = QUALITY_POLICIES[name]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return factory(options)


@register_policy("uniform")
def _uniform(options: QualityOptions) -> QualityPolicy:
    return UniformQuality(options.crf)


@register_policy("accmpeg")
def _accmpeg(options: QualityOptions) -> QualityPolicy:
    from edgeva.accmpeg.camera import DEFAULT_GAMMA, AccMPEGQuality
    from edgeva.accmpeg.selector import load_selector
    from edgeva.errors import ConfigError

    if options.selector is None:
        raise ConfigError("quality policy 'accmpeg' needs a selector checkpoint")
    model = load_selector(options.selector, final_dnn=options.final_dnn, warn=options.warn)
    return AccMPEGQuality(
        model,
        alpha=options.alpha,
        gamma=DEFAULT_GAMMA if options.gamma is None else options.gamma,
        crf_high=model.meta.crf_high if options.crf_high is None else options.crf_high,
        crf_low=model.meta.crf_low if options.crf_low is None else options.crf_low,
        warn=options.warn,
    )
