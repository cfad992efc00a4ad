"""Jensen-Shannon divergence of model features between two TFDV statistics (the drift gate's
and the monitor's measure), numeric features measured on their quantiles histograms.

TFDV's own ``jensen_shannon_divergence`` comparator measures numeric features on the
equal-width ("standard") histograms, whose ten buckets follow each side's own range. On a
long-tailed feature one large value stretches every bucket, so two random halves of the same
data differ: measured on 100,000 sample rows, ``tempo_desperd``'s train and eval splits came
out at 0.1012 that way (past the default threshold) against 0.0150 on the quantiles
histograms, whose equal-mass buckets are narrow where the data is. The categorical measure is
TFDV's, unchanged.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.distance import jensenshannon
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

Bucket = Tuple[float, float, float]  # low, high, sample count
_JS = anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE


def quantile_buckets(statistics: statistics_pb2.DatasetFeatureStatisticsList,
                     feature: str) -> Optional[List[Bucket]]:
    """The quantiles histogram of a numeric ``feature``, or None when it has none."""
    for found in statistics.datasets[0].features if statistics.datasets else []:
        if ".".join(found.path.step) != feature or not found.HasField("num_stats"):
            continue
        for histogram in found.num_stats.histograms:
            if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
                return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
    return None


def _masses(buckets: Sequence[Bucket], edges: np.ndarray) -> np.ndarray:
    """Bucket counts spread over the cells [edge i, edge i+1) plus a last cell {last edge},
    uniformly within each bucket; a single-value bucket goes to the cell it starts."""
    cells = np.zeros(len(edges))
    for low, high, count in buckets:
        if high > low:
            lows, highs = np.maximum(edges[:-1], low), np.minimum(edges[1:], high)
            cells[:-1] += count * np.clip(highs - lows, 0, None) / (high - low)
        else:
            cells[min(int(np.searchsorted(edges, low, side="right")) - 1, len(edges) - 1)] += count
    return cells


def jensen_shannon(first: Sequence[Bucket], second: Sequence[Bucket]) -> float:
    """Jensen-Shannon divergence (base 2, from 0 to 1) of two histograms, both moved onto the
    union of their bucket edges."""
    edges = np.unique([value for low, high, _ in list(first) + list(second)
                       for value in (low, high)])
    p, q = _masses(first, edges), _masses(second, edges)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)


def numeric_divergence(first: statistics_pb2.DatasetFeatureStatisticsList,
                       second: statistics_pb2.DatasetFeatureStatisticsList,
                       feature: str) -> Optional[float]:
    """Jensen-Shannon divergence of numeric ``feature`` between two statistics, or None when
    either lacks its quantiles histogram (a categorical feature, say)."""
    a, b = quantile_buckets(first, feature), quantile_buckets(second, feature)
    return None if a is None or b is None else jensen_shannon(a, b)


def comparator_schema(schema: schema_pb2.Schema, features: List[str], drift_threshold: float,
                      skew_threshold: float) -> schema_pb2.Schema:
    """A copy of ``schema`` with a Jensen-Shannon comparator on every model feature that has
    none (the schema's own thresholds win)."""
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
    """Every Jensen-Shannon measurement: {feature, kind (drift|skew), value, threshold,
    failed}. ``train``, ``eval_split`` and ``baseline`` are DatasetFeatureStatisticsLists."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    anomalies = tfdv.validate_statistics(train, schema, previous_statistics=baseline,
                                         serving_statistics=eval_split)
    rows = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, found, other in (("drift", info.drift_measurements, baseline),
                                   ("skew", info.skew_measurements, eval_split)):
            for item in found:
                if item.type == _JS:
                    # Numeric features: measured on the quantiles histograms (see divergence).
                    numeric = numeric_divergence(train, other, feature)
                    value = item.value if numeric is None else numeric
                    rows.append({"feature": feature, "kind": kind, "value": value,
                                 "threshold": item.threshold,
                                 "failed": value > item.threshold})
    return sorted(rows, key=lambda row: (row["kind"], row["feature"]))
