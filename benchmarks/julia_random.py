"""Time of the post's random draws by fluxlenet.julia_random (Julia's MersenneTwister in NumPy).

    python benchmarks/julia_random.py            # seed 42: the 5 weight arrays, then the 20 shuffles of 60,000 that 10 epochs train on

What a full-size run of the julia scheme draws before and while it trains (fluxlenet.init.epoch_orders
replays every shuffle before the epoch it resumes at). Median of 5, in seconds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from fluxlenet.config import RunConfig
from fluxlenet.init import epoch_orders, initial_weights


def main() -> int:
    layers = RunConfig().layers()
    weights, orders = [], []
    for _ in range(5):
        start = time.perf_counter()
        initial_weights(layers, 42, np.float32, rng="julia")
        weights.append(time.perf_counter() - start)
        start = time.perf_counter()
        draws = epoch_orders(layers, 42, 60000, rng="julia")
        for _ in range(10):
            next(draws)
        orders.append(time.perf_counter() - start)
    print(f"weights {statistics.median(weights):.3f} s; weights and the orders of 10 epochs (20 shuffles of "
          f"60,000) {statistics.median(orders):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
