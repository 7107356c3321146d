"""NeuroMesh's workload optimizer for the runtime: balancers, load predictors, content complexity.

* :mod:`.optimizer`: the imbalance measure and the balancers (``neuromesh``, ``distream``, ``none``).
* :mod:`.predictor`: next-interval load predictors (``last``, ``ema``, ``gru``).
* :mod:`.complexity`: a camera's expected work per second from its content.
"""

from edgeva.runtime.balance.optimizer import (
    BALANCERS,
    Distream,
    Move,
    NeuroMesh,
    NoBalancing,
    Plan,
    create_balancer,
    imbalance,
    weights,
)

__all__ = ["BALANCERS", "Distream", "Move", "NeuroMesh", "NoBalancing", "Plan", "create_balancer", "imbalance", "weights"]
