"""The web dashboard (FastAPI): cameras and edges of a running or finished run.

* ``data.py``: what the page shows, read from the results database only (read-only).
* ``frames.py``: the original frame of a result, decoded from the camera's source, with the
  server's boxes drawn.
* ``live.py``: queue length and model version of running nodes (their ``Status`` call).
* ``server.py``: the FastAPI app (``/``, ``/api/stats``, per-camera MJPEG and series) and
  the uvicorn server thread, for ``edgeva dashboard`` and the cloud node of a cluster.
* ``static/``: the page (plain HTML + JavaScript, no build step).
"""
