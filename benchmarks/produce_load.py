"""Helper process for benchmarks: produce simulated transactions at a rate, print the run's stats as JSON."""

from __future__ import annotations

import json
import sys

from app.config import get_settings
from streaming.simulate import run_live
from streaming.simulator import Simulator, SimulatorConfig
from streaming.sinks import KafkaSink

if __name__ == "__main__":
    topic, rate, duration, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    simulator = Simulator(SimulatorConfig(seed=seed, customers=10_000, merchants=2_000))
    stats = run_live(simulator, KafkaSink(get_settings(), topic), rate=rate, duration_s=duration)
    print(json.dumps({"events": stats.events, "seconds": stats.seconds, "rate": stats.rate}))
