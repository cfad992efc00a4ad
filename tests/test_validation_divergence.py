"""Numeric Jensen-Shannon divergence on TFDV's quantiles histograms: exact on hand-made
histograms, and steady on two random halves of a long-tailed feature where TFDV's own
equal-width measure is not."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from cartola.validation.divergence import jensen_shannon, numeric_divergence


def test_hand_made_histograms():
    assert jensen_shannon([(0, 1, 10), (1, 2, 10)], [(0, 1, 5), (1, 2, 5)]) == 0.0
    assert jensen_shannon([(0, 1, 10)], [(2, 3, 10)]) == pytest.approx(1.0)
    # Point masses at different values are told apart, the same value is not.
    assert jensen_shannon([(0, 0, 10)], [(1, 1, 10)]) == pytest.approx(1.0)
    assert jensen_shannon([(4, 4, 3)], [(4, 4, 9)]) == 0.0
    # Half of one side's mass lies where the other has none: p = (1/2, 1/2, 0), q = (0, 1/2,
    # 1/2) on the union of edges, so JS = 1/2.
    assert jensen_shannon([(0, 2, 10)], [(1, 3, 10)]) == pytest.approx(0.5)


def _statistics(values: np.ndarray):
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame({"x": values, "c": ["a"] *
                                                                 len(values)}))


def test_long_tail_halves_agree_where_equal_width_buckets_do_not():
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(7)
    values = np.round(np.expm1(4.0 + rng.normal(size=100_000)), 1)  # like tempo_desperd
    first, second = _statistics(values[::2]), _statistics(values[1::2])
    ours = numeric_divergence(first, second, "x")
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name="x", type=schema_pb2.FLOAT)
    feature.skew_comparator.jensen_shannon_divergence.threshold = 0.0
    (info,) = tfdv.validate_statistics(first, schema,
                                       serving_statistics=second).drift_skew_info
    tfdv_value = info.skew_measurements[0].value
    assert ours < 0.03 < tfdv_value, (ours, tfdv_value)
    shifted = numeric_divergence(first, _statistics(values[1::2] * 2), "x")
    assert shifted > 0.1, shifted
    assert numeric_divergence(first, second, "c") is None  # categorical: TFDV's measure
    assert numeric_divergence(first, second, "missing") is None
