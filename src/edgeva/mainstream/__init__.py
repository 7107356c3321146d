"""Mainstream (Jiang et al., USENIX ATC 2018): many applications fine-tuned from one base DNN
share its frozen prefix; a scheduler picks each app's sharing point and frame rate.

* :mod:`.accuracy`: the event-level F1 model (per-frame recall -> event recall / precision).
* :mod:`.scheduler`: schedule cost, the published greedy, a marginal-gain greedy, exact
  search, and the no-sharing / max-sharing baselines.
* :mod:`.base`: ShuffleNetV2 0.5x split into named segments and freeze points; latencies.
* :mod:`.apps`: app specs, automatic labels (YOLOX-Nano), training, the apps folder.
* :mod:`.runner`: the shared-prefix multi-app runner with Mainstream's feedback loop.
* :mod:`.evaluate`: measured event F1 of schedules, tables and plots.

See ``docs/mainstream.md``. Importing this package imports nothing heavy.
"""
