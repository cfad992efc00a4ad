"""False alarms and power of the drift and skew gate, on tables as users export them.

For each table (the six that ``python ../shared/datasets/fetch.py OUT`` writes, and the
project's sample data) it prints, for three measures side by side on the same statistics:

* false alarms: of 20 random 75/25 splits, how many the skew gate stops (train against eval);
  and of 20 random halves, how many the drift gate stops (one half against the other);
* power: planted drifts in a second span (one random half against the other, changed), and
  whether the gate names the planted feature: a numeric feature x5 (a unit bug), shifted by
  +0.5 standard deviation, 30% of its values missing; a categorical feature's most common value
  replaced by a new one; the label's positive share doubled (for a share above one half: its
  negative share halved).

Measures: ``common`` is the gate's (cartola.validation.divergence: common cells, floor
``drift_threshold`` and the sample-size bound, the label's odds ratio); ``tfdv`` is TFDV's own
``jensen_shannon_divergence`` comparator at 0.1 for every feature (its L-infinity norm reads 0
on numbers); ``union`` is this project's previous measure (quantile histograms moved onto the
union of both sides' edges) at 0.1. Neither of the last two looks at the label.

usage: python bench/drift_power.py DATASETS_DIR [--splits 20] [--tables a,b]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
import tomli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pylint: disable=wrong-import-position
import tensorflow_data_validation as tfdv

from cartola.config import Config, load_config
from cartola.validation import drift
from cartola.validation.divergence import (comparator_schema, quantile_buckets,
                                           statistics_options)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "snapshot=2026-11-16" / "cartola_sample.csv"
PLANTS = ("x5", "+0.5sd", "30% missing", "new top value", "label x2")


def load_table(folder: Path) -> Tuple[pd.DataFrame, str, List[str]]:
    """(rows with a 0/1 label, label, model features) of one fetched table."""
    about = tomli.loads((folder / "dataset.toml").read_text(encoding="utf-8"))
    frame = pd.read_csv(folder / "train" / "data.csv")
    label = about["label"]
    frame[label] = (frame[label].astype(str) == str(about["positive"])).astype(int)
    return frame, label, model_features(frame, label)


def model_features(frame: pd.DataFrame, label: str) -> List[str]:
    """Every column but the label and free text (what init proposes, before its finer
    roles: the gate's behaviour depends on the column type only)."""
    return [name for name in frame.columns if name != label and (
        pd.api.types.is_numeric_dtype(frame[name])
        or frame[name].nunique() <= min(1000, 0.5 * len(frame)))]


def statistics(frame: pd.DataFrame):
    """TFDV statistics with the pipeline's options, strings kept as strings."""
    return tfdv.generate_statistics_from_dataframe(frame, stats_options=statistics_options())


def _union_js(first, second, name: str) -> float:
    """The previous measure: both quantile histograms moved onto the union of their edges."""
    # pylint: disable=import-outside-toplevel
    from scipy.spatial.distance import jensenshannon
    a, b = quantile_buckets(first, name), quantile_buckets(second, name)
    if a is None or b is None:
        return float("nan")
    edges = np.unique([v for low, high, _ in a + b for v in (low, high)])

    def masses(buckets):
        cells = np.zeros(len(edges))
        for low, high, count in buckets:
            if high > low:
                lows, highs = np.maximum(edges[:-1], low), np.minimum(edges[1:], high)
                cells[:-1] += count * np.clip(highs - lows, 0, None) / (high - low)
            else:
                cells[min(int(np.searchsorted(edges, low, side="right")) - 1,
                          len(edges) - 1)] += count
        return cells
    p, q = masses(a), masses(b)
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)


def flagged(reference, current, schema, features: List[str], label: str,
            config: Config) -> Dict[str, List[str]]:
    """{measure: features past the threshold} comparing ``current`` with ``reference``."""
    result = drift.check({"train": current, "eval": None, "baseline": reference},
                         schema, {"features": features, "drift_threshold": config.drift_threshold,
                                  "skew_threshold": config.skew_threshold, "action": "stop",
                                  "label": label,
                                  "label_odds_ratio": config.label_drift_odds_ratio}, "b", "a")
    common = sorted({row["feature"] for row in result["measurements"] if row["failed"]})
    loose = comparator_schema(schema, features, 0.1, 0.1)
    anomalies = tfdv.validate_statistics(current, loose, previous_statistics=reference)
    by_tfdv = sorted({".".join(info.path.step) for info in anomalies.drift_skew_info
                      if any(m.value > m.threshold for m in info.drift_measurements)})
    union = sorted(name for name in features if _union_js(reference, current, name) > 0.1)
    return {"common": common, "tfdv": by_tfdv, "union": union}


def plant(frame: pd.DataFrame, kind: str, numeric: str, categorical: str, label: str,
          rng: np.random.Generator) -> Tuple[pd.DataFrame, str]:
    """A copy of ``frame`` with one drift planted, and the feature it is in."""
    changed = frame.copy()
    if kind == "x5":
        changed[numeric] = changed[numeric] * 5
        return changed, numeric
    if kind == "+0.5sd":
        changed[numeric] = changed[numeric] + 0.5 * frame[numeric].std()
        return changed, numeric
    if kind == "30% missing":
        changed[numeric] = changed[numeric].astype(float)
        changed.loc[rng.random(len(changed)) < 0.3, numeric] = np.nan
        return changed, numeric
    if kind == "new top value":
        top = changed[categorical].mode()[0]
        changed[categorical] = changed[categorical].replace(top, "__new_value__")
        return changed, categorical
    share = frame[label].mean()
    target = 2 * share if share <= 0.5 else 1 - (1 - share) / 2
    positives, negatives = frame[frame[label] == 1], frame[frame[label] == 0]
    n_pos = int(round(target * len(frame)))
    resampled = pd.concat([positives.sample(n_pos, replace=True, random_state=1),
                           negatives.sample(len(frame) - n_pos, replace=True, random_state=2)])
    return resampled.reset_index(drop=True), label


def bench_table(name: str, frame: pd.DataFrame,  # pylint: disable=too-many-locals
                label: str, features: List[str],
                splits: int, config: Config) -> Dict[str, object]:
    """False alarms and detections of each measure on one table."""
    rng = np.random.default_rng(0)
    schema = tfdv.infer_schema(statistics(frame))
    numeric_pool = [f for f in features if pd.api.types.is_numeric_dtype(frame[f])
                    and frame[f].nunique() > 2]
    numeric = max(numeric_pool, key=lambda f: frame[f].nunique()) if numeric_pool else ""
    categorical = next((f for f in features if not pd.api.types.is_numeric_dtype(frame[f])
                        and frame[f].nunique() >= 2), "")
    skew_alarms = {"common": 0, "tfdv": 0, "union": 0}
    drift_alarms = dict(skew_alarms)
    examples = []
    for _ in range(splits):
        order = rng.permutation(len(frame))
        cut = int(0.75 * len(frame))
        train, held = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
        for measure, found in flagged(statistics(train), statistics(held), schema, features,
                                      label, config).items():
            skew_alarms[measure] += bool(found)
            if measure == "common" and found:
                examples.append(found)
        half = len(frame) // 2
        first, second = frame.iloc[order[:half]], frame.iloc[order[half:]]
        for measure, found in flagged(statistics(first), statistics(second), schema, features,
                                      label, config).items():
            drift_alarms[measure] += bool(found)
    order = rng.permutation(len(frame))
    half = len(frame) // 2
    reference, span = frame.iloc[order[:half]], frame.iloc[order[half:]]
    reference_stats = statistics(reference)
    detections = {}
    for kind in PLANTS:
        if (kind == "new top value" and not categorical) or (kind != "label x2" and kind !=
                                                            "new top value" and not numeric):
            detections[kind] = ("n/a", "")
            continue
        changed, feature = plant(span, kind, numeric, categorical, label, rng)
        found = flagged(reference_stats, statistics(changed), schema, features, label, config)
        detections[kind] = ({m: feature in f for m, f in found.items()}, feature)
    return {"name": name, "rows": len(frame), "features": len(features),
            "skew": skew_alarms, "drift": drift_alarms, "detections": detections,
            "examples": examples}


def main(argv=None) -> int:  # pylint: disable=too-many-locals
    """Run every table and print the table of false alarms and detections."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("datasets", type=Path, help="the folder fetch.py wrote")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--tables", help="comma-separated subset")
    args = parser.parse_args(argv)
    config = Config()
    tables = []
    for folder in sorted(p for p in args.datasets.iterdir() if (p / "dataset.toml").is_file()):
        tables.append((folder.name,) + load_table(folder))
    cartola = load_config(environ={})
    sample = pd.read_csv(SAMPLE)
    tables.append(("cartola_sample", sample, cartola.label, list(cartola.all_features)))
    if args.tables:
        keep = set(args.tables.split(","))
        tables = [table for table in tables if table[0] in keep]
    print(f"drift_threshold = skew_threshold = {config.drift_threshold} (floor), noise p = "
          f"{drift.NOISE_P:g}, label odds ratio {config.label_drift_odds_ratio}; tfdv and "
          "union at 0.1\n")
    header = (f"{'table':15} {'rows':>6} {'feat':>4}  {'skew false alarms':^20}  "
              f"{'drift false alarms':^20}  " + "  ".join(f"{p:^17}" for p in PLANTS))
    print(header)
    print(f"{'':27}  {'common tfdv union':^20}  {'common tfdv union':^20}  "
          + "  ".join(f"{'common tfdv union':^17}" for _ in PLANTS))
    for name, frame, label, features in tables:
        started = time.perf_counter()
        found = bench_table(name, frame, label, features, args.splits, config)
        cells = []
        for kind in PLANTS:
            hit, _ = found["detections"][kind]
            cells.append(f"{'n/a':^17}" if hit == "n/a" else
                         f"{'yes' if hit['common'] else 'NO':^6} "
                         f"{'yes' if hit['tfdv'] else 'no':^4} "
                         f"{'yes' if hit['union'] else 'no':^5}")
        alarms = [f"{found[k]['common']:>4}/{args.splits} {found[k]['tfdv']:>2} "
                  f"{found[k]['union']:>4}" for k in ("skew", "drift")]
        print(f"{name:15} {found['rows']:>6} {found['features']:>4}  {alarms[0]:^20}  "
              f"{alarms[1]:^20}  " + "  ".join(cells)
              + f"   ({time.perf_counter() - started:.0f} s)", flush=True)
        planted = {k: v[1] for k, v in found["detections"].items() if v[1]}
        print(f"{'':15} planted in: {planted}"
              + (f"; common's false alarms named {found['examples'][:3]}"
                 if found["examples"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
