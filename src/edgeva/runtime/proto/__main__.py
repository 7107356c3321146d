"""Regenerate ``runtime_pb2.py`` and ``runtime_pb2_grpc.py`` from ``runtime.proto``.

    python -m edgeva.runtime.proto            # needs grpcio-tools (a test dependency)
    python -m edgeva.runtime.proto OUT_DIR    # write elsewhere (the freshness test does)
"""

from __future__ import annotations

import sys

from edgeva.runtime.proto import regenerate

if __name__ == "__main__":
    regenerate(sys.argv[1] if len(sys.argv) > 1 else None)
