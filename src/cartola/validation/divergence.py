"""How far apart two TFDV statistics of one feature are, and how far apart they would be by
chance alone: the drift gate's, the skew gate's and the monitor's measure.

Both sides are put on the same cells before comparing, and every cell holds a share of the
examples (a missing value is a cell of its own, so a column that goes 30% empty moves):

* numeric features: the reference side's deciles (from its quantiles histogram) cut the line
  into at most ten cells, and each side's share of each cell is read off its own quantiles
  histogram as a right-continuous CDF. Ties collapse edges, so an integer with few values or
  a point mass (every zero) is a cell of its own: such columns are compared as categories.
  A 0/1 column is read exactly from its mean.
* categorical features: the value counts of TFDV's rank histogram, plus "other" and missing.

The value is the Jensen-Shannon divergence (base 2, from 0 to 1) of the two cell shares. The
threshold is the larger of a floor (the config's ``drift_threshold`` / ``skew_threshold``, or a
comparator in the curated schema) and the noise bound: for two samples of n and m examples
from one distribution, ``8 ln 2 · JS / (1/n + 1/m)`` is about chi-square with cells - 1 degrees
of freedom, so random halves of that size exceed the bound with probability ``NOISE_P``.
Small files get a high bound and do not alarm on noise; large ones fall back to the floor.

Why not TFDV's own comparators (``bench/drift_power.py`` measures all three on the same
splits): TFDV's ``jensen_shannon_divergence`` on numeric features bins each side on its own
equal-width histogram and aligns them, which one long tail stretches; its L-infinity norm is
for categorical features only (always 0 on numbers); and neither knows the sample size. The
previous measure here, quantile histograms moved onto the union of both sides' edges, split
tied values across cells on one side only, and stopped random splits of tables with integer
amounts (0.13 on random halves). Common cells plus the bound stop none of them.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, norm
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

Bucket = Tuple[float, float, float]  # low, high, sample count
# Chance that random halves of one data set pass the noise bound, per feature and side.
NOISE_P = 1e-4
# Quantiles histogram resolution StatisticsGen is asked for: 1% of the examples per bucket,
# so tied values are placed within a percent.
QUANTILE_BUCKETS = 100
DECILES = np.arange(1, 10) / 10
OTHER, MISSING = "\0other", "\0missing"


def statistics_options():
    """TFDV options for the pipeline's StatisticsGen (and anything compared with it)."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    return tfdv.StatsOptions(num_quantiles_histogram_buckets=QUANTILE_BUCKETS)


def _feature(statistics, name: str):
    dataset = statistics.datasets[0] if statistics.datasets else None
    for found in dataset.features if dataset is not None else []:
        if (".".join(found.path.step) if found.path.step else found.name) == name:
            return dataset, found
    return dataset, None


def quantile_buckets(statistics: statistics_pb2.DatasetFeatureStatisticsList,
                     feature: str) -> Optional[List[Bucket]]:
    """The quantiles histogram of a numeric ``feature``, or None when it has none."""
    _, found = _feature(statistics, feature)
    if found is None or not found.HasField("num_stats"):
        return None
    for histogram in found.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
            return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
    return None


def cdf(buckets: Sequence[Bucket], points: np.ndarray) -> np.ndarray:
    """Share of the values at or below each point (right-continuous), values spread
    uniformly within each bucket and a single-value bucket a point mass."""
    total = sum(count for _, _, count in buckets) or 1.0
    result = np.zeros(len(points))
    for low, high, count in buckets:
        if high > low:
            result += count * np.clip((points - low) / (high - low), 0.0, 1.0)
        else:
            result += count * (points >= low)
    return result / total


def _quantiles(buckets: Sequence[Bucket], shares: np.ndarray) -> np.ndarray:
    """The values below which ``shares`` of the examples lie (inverse of :func:`cdf`)."""
    cells = np.array(list(buckets), dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(cells[:, 2])]) / max(cells[:, 2].sum(), 1.0)
    found = []
    for share in shares:
        index = min(int(np.searchsorted(cumulative, share, side="left")), len(cells)) - 1
        index = max(index, 0)
        low, high, _ = cells[index]
        span = cumulative[index + 1] - cumulative[index]
        found.append(low + (high - low) * ((share - cumulative[index]) / span if span else 1.0))
    return np.array(found)


def _binary(num) -> bool:
    return num.min >= 0 and num.max <= 1 and num.num_zeros + round(
        num.mean * num.common_stats.num_non_missing) == num.common_stats.num_non_missing


def numeric_cells(reference, current, name: str) -> Optional[Tuple[np.ndarray, np.ndarray,
                                                                    str]]:
    """Example counts of both sides on common cells (the reference's deciles, then missing),
    and how the cells were made; None when either side has no numeric statistics."""
    (ref_set, ref), (cur_set, cur) = _feature(reference, name), _feature(current, name)
    if ref is None or cur is None or not (ref.HasField("num_stats")
                                          and cur.HasField("num_stats")):
        return None
    sides = []
    for dataset, found in ((ref_set, ref), (cur_set, cur)):
        num = found.num_stats
        sides.append((num, num.common_stats.num_non_missing,
                      max(dataset.num_examples - num.common_stats.num_non_missing, 0)))
    if all(_binary(num) for num, _, _ in sides):
        counts = [np.array([present - num.mean * present, num.mean * present, missing])
                  for num, present, missing in sides]
        return counts[0], counts[1], "0/1 values"
    histograms = [quantile_buckets(reference, name), quantile_buckets(current, name)]
    edges = (np.unique(_quantiles(histograms[0], DECILES)) if all(histograms)
             else np.array([]))
    counts = [_cell_counts(buckets, edges, present, missing)
              for (_, present, missing), buckets in zip(sides, histograms)]
    basis = ("the served data's deciles" if len(edges) >= 9
             else f"{len(edges) + 1} cells: tied values")
    return counts[0], counts[1], basis


def _cell_counts(buckets, edges: np.ndarray, present: float, missing: float) -> np.ndarray:
    """Examples per cell between ``edges`` (from a quantiles histogram), then missing."""
    below = cdf(buckets, edges) if buckets else np.zeros(len(edges))
    shares = (np.diff(np.concatenate([[0.0], below, [1.0]])) if present
              else np.zeros(len(edges) + 1))
    return np.append(shares * present, missing)


def categorical_cells(reference, current, name: str) -> Optional[Tuple[np.ndarray,
                                                                        np.ndarray, str]]:
    """Example counts of both sides per value (TFDV's rank histogram), other and missing."""
    per_side = []
    for statistics in (reference, current):
        dataset, found = _feature(statistics, name)
        if found is None or not found.HasField("string_stats"):
            return None
        string = found.string_stats
        buckets = string.rank_histogram.buckets or [
            statistics_pb2.RankHistogram.Bucket(label=v.value, sample_count=v.frequency)
            for v in string.top_values]
        counts = {bucket.label: bucket.sample_count for bucket in buckets}
        present = string.common_stats.num_non_missing
        counts[OTHER] = max(present - sum(counts.values()), 0)
        counts[MISSING] = max(dataset.num_examples - present, 0)
        per_side.append(counts)
    keys = sorted(set(per_side[0]) | set(per_side[1]))
    return (np.array([per_side[0].get(key, 0.0) for key in keys]),
            np.array([per_side[1].get(key, 0.0) for key in keys]), "value counts")


def jensen_shannon(first: np.ndarray, second: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2) of two count vectors on the same cells."""
    if first.sum() <= 0 or second.sum() <= 0:
        return 0.0
    return float(jensenshannon(first / first.sum(), second / second.sum(), base=2) ** 2)


def noise_bound(first: np.ndarray, second: np.ndarray, p: float = NOISE_P) -> float:
    """The divergence two samples of these sizes from one distribution exceed with chance
    ``p`` on these cells (the chi-square approximation of the divergence)."""
    cells = int(np.count_nonzero(first + second))
    if cells < 2 or first.sum() <= 0 or second.sum() <= 0:
        return 0.0
    spread = 1.0 / first.sum() + 1.0 / second.sum()
    return float(min(chi2.isf(p, cells - 1) * spread / (8 * math.log(2)), 1.0))


def compare(reference, current, name: str) -> Optional[Dict]:
    """{value, noise, cells, basis} of feature ``name`` between two statistics lists, or None
    when it is absent from either."""
    found = numeric_cells(reference, current, name) or categorical_cells(reference, current,
                                                                         name)
    if found is None:
        return None
    first, second, basis = found
    return {"value": jensen_shannon(first, second), "noise": noise_bound(first, second),
            "cells": int(np.count_nonzero(first + second)), "basis": basis,
            "examples": [int(round(first.sum())), int(round(second.sum()))]}


def numeric_divergence(first, second, feature: str) -> Optional[float]:
    """Jensen-Shannon divergence of numeric ``feature`` between two statistics, or None when
    either lacks numeric statistics."""
    found = numeric_cells(first, second, feature)
    return None if found is None else jensen_shannon(found[0], found[1])


def label_shift(reference, current, label: str, max_odds_ratio: float,
                p: float = NOISE_P) -> Optional[Dict]:
    """The 0/1 label's positive share on both sides, their odds ratio, and whether it moved
    past ``max_odds_ratio`` (either way) by more than chance (a two-proportion z test at
    ``p``). A share that doubles from 3% is 0.004 in Jensen-Shannon terms, lost under any
    floor that suits features, so the label gets its own measure."""
    shares = []
    for statistics in (reference, current):
        _, found = _feature(statistics, label)
        if found is None or not found.HasField("num_stats"):
            return None
        num = found.num_stats
        shares.append((num.mean, num.common_stats.num_non_missing))
    (p1, n1), (p2, n2) = shares[0], shares[1]
    if min(n1, n2) == 0 or p2 in (0.0, 1.0) or p1 in (0.0, 1.0):
        return None  # a single class: the schema gate's one line names it
    eps = 0.5 / max(n1, n2)
    ratio = (max(p2, eps) / max(1 - p2, eps)) / (max(p1, eps) / max(1 - p1, eps))
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
    z = abs(p2 - p1) / spread
    significant = z > norm.isf(p / 2)
    return {"reference_share": p1, "share": p2, "odds_ratio": ratio, "z": z,
            "significant": bool(significant),
            "failed": bool(significant and abs(math.log(ratio)) > math.log(max_odds_ratio))}


def comparator_schema(schema: schema_pb2.Schema, features: List[str], drift_threshold: float,
                      skew_threshold: float) -> schema_pb2.Schema:
    """A copy of ``schema`` with a Jensen-Shannon comparator on every model feature that has
    none (the schema's own thresholds win): the floors of :func:`measure`."""
    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    by_name = {feature.name: feature for feature in result.feature}
    for name in features:
        feature = by_name.get(name)
        if feature is None:
            continue  # not in the schema: ExampleValidator reports it
        for comparator, threshold in ((feature.drift_comparator, drift_threshold),
                                      (feature.skew_comparator, skew_threshold)):
            if not comparator.HasField("jensen_shannon_divergence"):
                comparator.jensen_shannon_divergence.threshold = threshold
    return result


def measure(train, eval_split, schema: schema_pb2.Schema, baseline=None) -> List[Dict]:
    """Every measurement: {feature, kind (drift|skew), value, threshold, floor, noise,
    threshold_from, cells, basis, failed}, for each feature with a Jensen-Shannon comparator
    in ``schema`` (:func:`comparator_schema`). Drift compares ``baseline`` (the reference)
    with ``train``; skew compares ``train`` (the reference) with ``eval_split``. All three are
    DatasetFeatureStatisticsLists; either comparison is skipped when its side is None."""
    rows = []
    for feature in schema.feature:
        for kind, comparator, reference, current in (
                ("drift", feature.drift_comparator, baseline, train),
                ("skew", feature.skew_comparator, train, eval_split)):
            if reference is None or current is None or not comparator.HasField(
                    "jensen_shannon_divergence"):
                continue
            found = compare(reference, current, feature.name)
            if found is None:
                continue
            floor = comparator.jensen_shannon_divergence.threshold
            threshold = max(floor, found["noise"])
            rows.append({"feature": feature.name, "kind": kind, **found, "floor": floor,
                         "threshold": threshold,
                         "threshold_from": "floor" if floor >= found["noise"] else "noise",
                         "failed": found["value"] > threshold})
    return sorted(rows, key=lambda row: (row["kind"], row["feature"]))
