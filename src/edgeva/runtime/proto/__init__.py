"""Protocol buffers of the runtime. ``runtime_pb2*.py`` are generated and committed;
``python -m edgeva.runtime.proto`` regenerates them from ``runtime.proto``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROTO", "regenerate"]

PROTO = Path(__file__).with_name("runtime.proto")


def regenerate(out_dir: str | Path | None = None) -> list[Path]:
    """Run protoc on ``runtime.proto``; returns the written files.

    Imports in the generated code are rooted at ``src`` (``from edgeva.runtime.proto import
    runtime_pb2``), so ``out_dir`` receives an ``edgeva/runtime/proto/`` tree unless it is None,
    in which case the files beside this module are overwritten.
    """
    from grpc_tools import protoc

    src = PROTO.parents[3]
    target = Path(out_dir) if out_dir is not None else src
    rel = PROTO.relative_to(src)
    (target / rel.parent).mkdir(parents=True, exist_ok=True)
    code = protoc.main(["protoc", f"-I{src}", f"--python_out={target}", f"--grpc_python_out={target}", str(PROTO)])
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
    return [target / rel.parent / "runtime_pb2.py", target / rel.parent / "runtime_pb2_grpc.py"]
