"""Made-up binary-label data set (video-streaming churn) showing the pipeline on another CSV
by config alone: string features (plan, region) next to numeric ones.

    python examples/streaming_churn/generate.py   # rewrites data/streaming_churn.csv
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def generate(n_rows: int = 3000, seed: int = 7) -> pd.DataFrame:
    """Seeded rows; churn depends on plan, tenure, tickets and viewing hours."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "standard", "premium"], n_rows, p=[0.5, 0.35, 0.15])
    region = rng.choice(["north", "south", "east", "west"], n_rows)
    tenure = rng.integers(1, 72, n_rows)
    fee = np.select([plan == "basic", plan == "standard"], [19.9, 32.9], 45.9)
    tickets = rng.poisson(1.2, n_rows)
    hours = rng.lognormal(3, 0.8, n_rows).round(1)
    logit = (0.8 - 0.04 * tenure + 0.5 * tickets - 0.6 * np.log1p(hours)
             + np.select([plan == "basic", plan == "standard"], [0.8, 0.2], -0.4) + 1.2)
    churned = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"customer_id": np.arange(1, n_rows + 1), "plan": plan,
                          "region": region, "tenure_months": tenure, "monthly_fee": fee,
                          "support_tickets": tickets, "hours_watched": hours,
                          "churned": churned})
    frame.loc[rng.random(n_rows) < 0.05, "hours_watched"] = np.nan
    frame.loc[rng.random(n_rows) < 0.03, "region"] = None
    return frame


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "data" / "streaming_churn.csv")
    args = parser.parse_args()
    generate().to_csv(args.out, index=False)
    print(f"wrote {args.out}")
