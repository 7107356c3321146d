"""A real RTSP server for a video file: GStreamer's RTSP server, through PyGObject.

Run by the *system* Python (Debian's ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``;
edgeva's virtual environment cannot import ``gi``), so this file imports nothing from
edgeva. Serves ``rtsp://HOST:PORT/cam``: every client gets the H.264 track of the file from
its start, paced at its frame rate (RTP over TCP or UDP, as the client asks). Prints
``PORT <n>`` once listening (``--port 0`` picks a free one), then serves until killed.

    /usr/bin/python3 rtsp_serve.py --video clip.mp4 --port 0
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True, help="an MP4 file with an H.264 video track")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mount", default="/cam")
    args = parser.parse_args()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"rtsp_serve: GStreamer's RTSP server is not available ({exc})", file=sys.stderr)
        return 3
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.video.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )')
    factory.set_shared(False)  # each client its own pipeline, from the start of the file
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"rtsp_serve: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    print(f"PORT {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
