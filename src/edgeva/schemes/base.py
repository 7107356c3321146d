"""A streaming scheme = what the camera sends + what the server answers, chunk by chunk.

Every scheme the evaluation compares (uniform/AWStream, AccMPEG, DDS, EAAR, Reducto, Vigil)
implements :class:`Scheme`: given a chunk of original frames it returns a
:class:`ChunkOutcome` — the uploads it made (bytes, camera compute before each upload,
server inference after it) and the server's final detections for every frame of the chunk
(reused results included for frames it did not send). Time is measured, bytes are real
encoder output, detections come from the final DNN on decoded frames.

Schemes are registered by name (``@register_scheme``) and describe their own parameter
sweep, so the harness, the CLI and the tests treat them all alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from edgeva.models import Detections, Detector
from edgeva.net import Exchange
from edgeva.registry import Registry
from edgeva.video import EncoderSettings

__all__ = [
    "ChunkOutcome",
    "ProfileClip",
    "Server",
    "SchemeContext",
    "Scheme",
    "register_scheme",
    "create_scheme",
    "list_schemes",
    "scheme_class",
]


@dataclass
class ChunkOutcome:
    first_frame: int
    frames: int
    rounds: list[Exchange]  # uploads in order; a later one waits for the server's answer to the previous
    detections: list[Detections]  # the server's final result for each frame of the chunk
    sent_frames: int  # frames that reached the server (the rest reuse an earlier result)
    high_fraction: float = 0.0  # mean fraction of macroblocks sent at high quality
    # Online adaptation (AccMPEG's ``adapt_every``): bytes of the extra frame uploaded with
    # this chunk (already inside ``rounds``), of the weights sent back, and the server's seconds.
    adapt_up_bytes: int = 0
    downlink_bytes: int = 0
    adapt_server_s: float = 0.0

    @property
    def nbytes(self) -> int:
        """Uplink bytes (the chunk's uploads, an adaptation frame included)."""
        return sum(r.nbytes for r in self.rounds)


class Server:
    """The final DNN on the server: timed inference on what arrived."""

    def __init__(self, detector: Detector, *, batch_size: int = 4):
        self.detector = detector
        self.batch_size = batch_size

    def infer(self, frames: Sequence[np.ndarray]) -> tuple[list[Detections], float]:
        if not frames:
            return [], 0.0
        start = time.perf_counter()
        results = self.detector.detect(list(frames), batch_size=self.batch_size)
        return results, time.perf_counter() - start


@dataclass
class ProfileClip:
    """Video a scheme may profile offline (Reducto's threshold map): frames and the final DNN's
    results on them. Never the video being evaluated."""

    name: str
    frames: list[np.ndarray]
    reference: list[Detections]


@dataclass
class SchemeContext:
    """What every scheme instance gets: the server, encoder settings, the frame geometry."""

    server: Server
    settings: EncoderSettings
    frame_size: tuple[int, int]  # (height, width) of the original frames
    fps: float
    camera_detector: Callable[[], Detector] | None = None  # lazily built cheap detector (Vigil)
    checkpoints: dict[str, str] = field(default_factory=dict)  # kind ("selector", ...) -> path of a trained model
    profile_clips: Callable[[], list[ProfileClip]] | None = None  # lazily loaded profiling video (Reducto)
    chunk: int = 10  # frames per chunk (a segment, for schemes that profile per segment)
    extras: dict = field(default_factory=dict)

    def checkpoint(self, kind: str, scheme: str) -> str:
        """The path of the ``kind`` checkpoint ``scheme`` needs; a one-line error when none was given."""
        from edgeva.errors import ConfigError

        path = self.checkpoints.get(kind)
        if not path:
            raise ConfigError(f"scheme {scheme} needs a {kind} checkpoint (--{kind} PATH)")
        return path


class Scheme(ABC):
    """Base class of streaming schemes. Subclasses set ``name`` and implement
    :meth:`process`; :meth:`sweep` lists the configurations the evaluation tries."""

    name: ClassVar[str] = "scheme"
    description: ClassVar[str] = ""
    # Kinds of trained checkpoints the scheme needs (keys of SchemeContext.checkpoints, e.g.
    # "selector"); the harness requires each before any work and keys cached replays by their content.
    checkpoints: ClassVar[tuple[str, ...]] = ()
    # Whether configurations profile on other videos (SchemeContext.profile_clips); the harness
    # then keys cached replays by the profiling videos too.
    profiles: ClassVar[bool] = False
    # Not deployable (it uses what a real camera or server does not have, e.g. the final DNN on
    # the camera or hindsight on the evaluated video): reported as a bound, never as a baseline.
    bound: ClassVar[bool] = False

    def __init__(self, ctx: SchemeContext, **config: object):
        self.ctx = ctx
        self.config = config

    def reset(self) -> None:  # noqa: B027  (stateless schemes have nothing to forget)
        """Forget state carried between chunks (called at the start of each video)."""

    @abstractmethod
    def process(self, frames: list[np.ndarray], first_frame: int) -> ChunkOutcome:
        """Stream one chunk of original frames and return what the server ends up with."""

    @classmethod  # noqa: B027  (schemes without checkpoints have nothing to check)
    def check_checkpoints(cls, checkpoints: dict[str, str], *, model: str, log: Callable[[str], None]) -> None:
        """Load and validate this scheme's checkpoints before any work (a missing, damaged or
        foreign file is one error line); ``model`` is the final DNN, ``log`` takes warnings."""

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        """Configurations to evaluate (keyword arguments of the constructor)."""
        return [{}]

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items()) or "default"


STREAMING_SCHEMES: Registry[type[Scheme]] = Registry("streaming scheme")
list_schemes = STREAMING_SCHEMES.names


def register_scheme(cls: type[Scheme]) -> type[Scheme]:
    """Class decorator: make a scheme available by its ``name``; names are unique."""
    return STREAMING_SCHEMES.register(cls.name)(cls)


def scheme_class(name: str) -> type[Scheme]:
    from edgeva.errors import ConfigError

    try:
        return STREAMING_SCHEMES[name]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def create_scheme(name: str, ctx: SchemeContext, **config: object) -> Scheme:
    return scheme_class(name)(ctx, **config)
