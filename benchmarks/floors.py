"""The spread of every data-dependent test floor over many seeds, so each pinned test world is shown to clear its
floor with a margin, not by luck. Not a test (it trains a model per seed); run when a floor or a world changes:

    .venv/bin/python benchmarks/floors.py --seeds 20

* training world (tests/integration/test_training.py): 3 days of the default simulator world, the time split,
  the original design's parameters fitted plainly (the test tunes 2 trials and fits with Ray Train; the proxy's
  AUC is the same model family on the same split) -> test AUC, floor 0.8;
* behaviour world (tests/model/test_model_behaviour.py): 4 days, card testing and takeovers x3 -> the model's
  AP against amount alone, the share of transactions scoring higher at 20x the amount, and the share of card-
  testing and takeover transactions scoring above their customer's usual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.model import behaviour
from tests.model.test_model_behaviour import FLOORS, SEED

TRAINING_FLOOR = 0.8  # tests/integration/test_training.py, whose world is pinned to the same SEED


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    console = Console(width=160)
    seeds = [SEED, *range(1, args.seeds + 1)]
    rows: dict[str, list[float]] = {name: [] for name in ("training AUC", *FLOORS)}
    for seed in seeds:
        world = behaviour.train_on_world(seed, days=behaviour.TRAINING_WORLD_DAYS,
                                         start=behaviour.TRAINING_WORLD_START)
        rows["training AUC"].append(behaviour.test_auc(world))
        t = behaviour.train_on_world(seed, shares=behaviour.BEHAVIOUR_SHARES)
        model_ap, amount_ap = behaviour.average_precision_vs_amount_alone(t)
        rows["AP minus amount-alone AP"].append(model_ap - amount_ap)
        rows["share higher at 20x amount"].append(behaviour.share_scoring_higher_at_20x_amount(t))
        rows["card testing above usual"].append(behaviour.share_above_the_customers_usual(t, "card_testing")[0])
        rows["takeover above usual"].append(behaviour.share_above_the_customers_usual(t, "account_takeover")[0])
        console.print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items()))
    table = Table(title=f"floors over {len(seeds)} seeds (pinned seed first)")
    for column in ("quantity", "floor", "pinned", "min", "p10", "median", "max", "seeds under floor"):
        table.add_column(column, justify="right" if column != "quantity" else "left")
    floors = {"training AUC": TRAINING_FLOOR, **FLOORS}
    for name, values in rows.items():
        v = np.array(values)
        table.add_row(name, f"{floors[name]:.3f}", f"{v[0]:.3f}", f"{np.nanmin(v):.3f}",
                      f"{np.nanpercentile(v, 10):.3f}", f"{np.nanmedian(v):.3f}", f"{np.nanmax(v):.3f}",
                      str(int((v < floors[name]).sum())))
    console.print(table)


if __name__ == "__main__":
    main()
