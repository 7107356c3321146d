"""How a runtime camera chooses the quality of each chunk: its ``encoding`` section mapped
onto a quality policy from :mod:`edgeva.quality` (``uniform``, ``accmpeg``, or any
registered with :func:`edgeva.quality.register_policy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeva.quality import (
    QUALITY_POLICIES,
    QualityOptions,
    QualityPolicy,
    list_policies,
    register_policy,
)

if TYPE_CHECKING:
    from edgeva.runtime.config import EncodingConfig

__all__ = ["create_scheme", "list_schemes", "register_scheme"]

# The camera config's `encoding.scheme` names a quality policy (edgeva.quality.QUALITY_POLICIES).
register_scheme = register_policy
list_schemes = list_policies


def create_scheme(config: EncodingConfig) -> QualityPolicy:
    """The policy a camera's ``encoding`` section names (validated by the config already)."""
    options = QualityOptions(crf=config.crf, selector=config.checkpoint, alpha=config.alpha, gamma=config.gamma)
    return QUALITY_POLICIES[config.scheme](options)
