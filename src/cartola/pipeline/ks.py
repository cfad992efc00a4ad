"""The Kolmogorov-Smirnov statistic between the scores of the two classes, computed once.

The blessing (TFMA's confusion matrices, :func:`ks_from_matrices`) and the run report (the eval
split scored again, :func:`ks_statistic`, scipy's two-sample test) find it here. No TensorFlow:
the report must not pay its imports to draw a figure.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def cdf_gaps(first, first_total, second, second_total) -> np.ndarray:
    """Signed gaps ``first/first_total - second/second_total`` between two classes' shares
    (of scores at or below, or above, each threshold: the gaps have the same size)."""
    return (np.asarray(first, dtype=float) / np.asarray(first_total, dtype=float)
            - np.asarray(second, dtype=float) / np.asarray(second_total, dtype=float))


def ks_from_matrices(matrices) -> float:
    """Max |TPR - FPR| over the matrices' thresholds (NaN when a class is absent).

    ``matrices`` carries TFMA's per-threshold ``tp``, ``fn``, ``fp`` and ``tn`` counts."""
    tp, fn = np.asarray(matrices.tp, dtype=float), np.asarray(matrices.fn, dtype=float)
    fp, tn = np.asarray(matrices.fp, dtype=float), np.asarray(matrices.tn, dtype=float)
    positives, negatives = tp + fn, fp + tn
    if tp.size == 0 or np.any(positives == 0) or np.any(negatives == 0):
        return float("nan")
    return float(np.max(np.abs(cdf_gaps(tp, positives, fp, negatives))))


def ks_statistic(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(KS, threshold): the largest gap between the two classes' score CDFs and the score
    where it lies, from ``scipy.stats.ks_2samp`` as the baseline script computes it; (NaN,
    NaN) when a class is absent or a score is NaN."""
    from scipy import stats  # pylint: disable=import-outside-toplevel
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if positives.size == 0 or negatives.size == 0:
        return math.nan, math.nan
    if np.isnan(positives).any() or np.isnan(negatives).any():
        return math.nan, math.nan
    result = stats.ks_2samp(positives, negatives, method="asymp")
    return float(result.statistic), float(result.statistic_location)
