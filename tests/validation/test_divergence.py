"""The gate's measure on real TFDV statistics: common cells, ties and point masses, missing
values, the sample-size bound and the label's odds ratio; random halves never pass their
threshold, and real changes do."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

tfdv = pytest.importorskip("tensorflow_data_validation")

# pylint: disable=wrong-import-position
from cartola.validation.divergence import (cdf, compare, comparator_schema, jensen_shannon,
                                           label_shift, measure, noise_bound, numeric_divergence,
                                           statistics_options)


def _stats(frame: pd.DataFrame):
    return tfdv.generate_statistics_from_dataframe(frame, stats_options=statistics_options())


def test_cdf_is_right_continuous_with_point_masses():
    buckets = [(0, 0, 5), (0, 2, 5)]  # half the values are 0, half spread over (0, 2]
    assert cdf(buckets, np.array([-1.0, 0.0, 1.0, 2.0])) == pytest.approx([0, 0.5, 0.75, 1.0])


def test_jensen_shannon_and_noise_bound_on_counts():
    assert jensen_shannon(np.array([5.0, 5.0]), np.array([50.0, 50.0])) == 0.0
    assert jensen_shannon(np.array([10.0, 0.0]), np.array([0.0, 10.0])) == pytest.approx(1.0)
    small = noise_bound(np.full(10, 10.0), np.full(10, 3.0))
    large = noise_bound(np.full(10, 10_000.0), np.full(10, 3_000.0))
    assert small > 100 * large > 0  # the bound falls as 1/n


def test_tied_integer_amounts_halves_stay_below_threshold_where_the_old_measure_did_not():
    rng = np.random.default_rng(3)
    values = 15 * rng.poisson(6, 4000)  # an amount in steps of 15, many ties
    frame = pd.DataFrame({"x": values})
    first, second = _stats(frame.iloc[::2]), _stats(frame.iloc[1::2])
    found = compare(first, second, "x")
    assert found["value"] < 0.005 and found["value"] < found["noise"] + 0.02, found
    assert compare(first, _stats(frame.iloc[1::2] * 5), "x")["value"] > 0.3


def test_missing_values_and_categories_are_cells():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(size=4000), "c": rng.choice(list("abc"), 4000)})
    emptied = frame.copy()
    emptied.loc[rng.random(4000) < 0.3, "x"] = np.nan
    base = _stats(frame)
    assert compare(base, _stats(emptied), "x")["value"] > 0.1
    renamed = frame.assign(c=frame["c"].replace("a", "z"))
    found = compare(base, _stats(renamed), "c")
    assert found["basis"] == "value counts" and found["value"] > 0.25
    assert numeric_divergence(base, base, "c") is None


def test_measure_raises_small_samples_threshold_to_the_noise():
    rng = np.random.default_rng(5)
    small = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)})
    schema = comparator_schema(tfdv.infer_schema(_stats(small)), ["x", "y"], 0.02, 0.02)
    rows = measure(_stats(small.iloc[:45]), _stats(small.iloc[45:]), schema)
    assert {row["kind"] for row in rows} == {"skew"}
    assert all(row["threshold_from"] == "noise" and row["threshold"] > 0.02 for row in rows)
    assert not any(row["failed"] for row in rows)


def test_label_odds_ratio():
    rng = np.random.default_rng(6)
    base = _stats(pd.DataFrame({"y": (rng.random(8000) < 0.03).astype(int)}))
    doubled = _stats(pd.DataFrame({"y": (rng.random(4000) < 0.06).astype(int)}))
    same = _stats(pd.DataFrame({"y": (rng.random(4000) < 0.03).astype(int)}))
    assert label_shift(base, doubled, "y", 1.5)["failed"]
    assert not label_shift(base, same, "y", 1.5)["failed"]
    assert label_shift(base, same, "missing", 1.5) is None


def test_schema_comparator_is_the_floor():
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name="x", type=schema_pb2.FLOAT)
    feature.drift_comparator.jensen_shannon_divergence.threshold = 0.5
    checked = comparator_schema(schema, ["x"], 0.02, 0.03)
    assert checked.feature[0].drift_comparator.jensen_shannon_divergence.threshold == 0.5
    assert checked.feature[0].skew_comparator.jensen_shannon_divergence.threshold == 0.03
