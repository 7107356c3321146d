"""Crucio (Wu et al., INFOCOM 2024), small: a 3D-convolutional clip autoencoder with a
quantised latent and a learned entropy model (real range-coded bytes), and a GRU keyframe
selector; ``train.py`` trains both on sample videos, ``codec.py`` is the camera and server."""

from edgeva.crucio.codec import CameraChunk, CrucioCodec, CrucioMeta, load_crucio, save_crucio
from edgeva.crucio.model import ClipAutoencoder, CodecSpec, KeyframeGRU

__all__ = ["CameraChunk", "ClipAutoencoder", "CodecSpec", "CrucioCodec", "CrucioMeta", "KeyframeGRU", "load_crucio", "save_crucio"]
