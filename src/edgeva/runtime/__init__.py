"""The distributed runtime (EdgeCam): cameras, edge nodes and a cloud over gRPC.

* ``camera``: read, filter, encode, deliver chunks with retries and fail-over, record frames.
* ``edge``: standalone worker, offloading policy and pool, info updater, drift + retraining.
* ``cloud``: golden model, region inference, labelling and fine-tuning service.
* ``cluster``: run one service here, or the whole topology as local processes.

Extension points (name registries): camera encoding schemes (:mod:`.encoding`), offloading
policies (:mod:`.policy`), edge inference workers (:mod:`.worker`). See ``docs/runtime.md``.
Importing this package imports nothing heavy; import the modules you need.
"""
