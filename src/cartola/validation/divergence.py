"""Jensen-Shannon divergence of a numeric feature between two TFDV statistics, measured on
their quantiles histograms.

TFDV's own ``jensen_shannon_divergence`` comparator measures numeric features on the
equal-width ("standard") histograms, whose ten buckets follow each side's own range. On a
long-tailed feature one large value stretches every bucket, so two random halves of the same
data differ: measured on 100,000 sample rows, ``tempo_desperd``'s train and eval splits came
out at 0.1012 that way (past the default threshold) against 0.0150 on the quantiles
histograms, whose equal-mass buckets are narrow where the data is. The categorical measure is
TFDV's, unchanged.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.distance import jensenshannon
from tensorflow_metadata.proto.v0 import statistics_pb2

Bucket = Tuple[float, float, float]  # low, high, sample count


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
