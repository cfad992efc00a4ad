"""The one KS computation against scipy's two-sample test: statistic and location, from scores
and from TFMA-shaped confusion matrices, ties included. ``method="asymp"`` as the report used
it: scipy's exact method rounds the statistic to a fraction of the sample sizes."""
import math

import numpy as np
import pytest
from scipy import stats

from cartola.pipeline.ks import cdf_gaps, ks_from_matrices, ks_statistic
from pipeline_helpers import FakeMatrices  # pylint: disable=wrong-import-order


def _samples(seed, n, rounding):
    """Scores of two overlapping classes; rounding to ``rounding`` decimals makes ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    return (np.round(scores, rounding) if rounding is not None else scores), labels


@pytest.mark.parametrize("seed, n, rounding", [(0, 500, None), (1, 3000, None), (2, 2000, 2),
                                               (3, 400, 1), (4, 50, 0), (5, 7, None)])
def test_ks_statistic_is_scipys_statistic_and_location(seed, n, rounding):
    scores, labels = _samples(seed, n, rounding)
    expected = stats.ks_2samp(scores[labels == 1], scores[labels == 0], method="asymp")
    assert expected.statistic_sign == -1  # positives score higher: their CDF lies below
    assert ks_statistic(scores, labels) == (float(expected.statistic),
                                            float(expected.statistic_location))


def test_ks_statistic_where_negatives_score_higher():
    scores, labels = _samples(6, 1000, 2)
    labels = 1 - labels  # the positives' CDF now lies above the negatives' (scipy's sign +1)
    expected = stats.ks_2samp(scores[labels == 1], scores[labels == 0], method="asymp")
    assert expected.statistic_sign == 1
    assert ks_statistic(scores, labels) == (float(expected.statistic),
                                            float(expected.statistic_location))


@pytest.mark.parametrize("labels, scores", [([1, 1, 1], [0.1, 0.2, 0.3]),
                                            ([0, 0], [0.1, 0.2]),
                                            ([1, 0, 1], [0.1, math.nan, 0.3])])
def test_ks_statistic_is_nan_without_both_classes_or_with_a_nan_score(labels, scores):
    ks, threshold = ks_statistic(np.array(scores), np.array(labels))
    assert math.isnan(ks) and math.isnan(threshold)


@pytest.mark.parametrize("seed, rounding", [(7, None), (8, 2), (9, 1)])
def test_ks_from_matrices_is_scipys_statistic(seed, rounding):
    scores, labels = _samples(seed, 2000, rounding)
    expected = stats.ks_2samp(scores[labels == 1], scores[labels == 0]).statistic
    # Every observed score as a threshold (and one below all): the matrices see every step.
    thresholds = np.concatenate([[-1e-7], np.unique(scores)])
    assert ks_from_matrices(FakeMatrices(scores, labels, thresholds)) == pytest.approx(
        expected, abs=1e-12)


def test_ks_from_matrices_is_nan_with_one_class_or_no_threshold():
    scores = np.array([0.2, 0.8])
    assert math.isnan(ks_from_matrices(FakeMatrices(scores, np.array([0, 0]), [0.5])))
    assert math.isnan(ks_from_matrices(FakeMatrices(scores, np.array([0, 1]), [])))


def test_cdf_gaps_are_signed_share_differences():
    assert cdf_gaps([1, 2], 4, [3, 1], 4).tolist() == [-0.5, 0.25]
