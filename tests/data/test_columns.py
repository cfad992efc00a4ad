"""Column roles init reads from the rows: keys, codes, times and leaks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cartola.data.columns import integer_role, leaks, single_column_auc, text_role


def test_keys_codes_and_times_are_no_quantities():
    rng = np.random.default_rng(0)
    rows = 500
    assert "unique per row" in integer_role("customer_id", pd.Series(np.arange(rows) + 7))
    assert "unique per row" in integer_role("x", pd.Series(1_600_000_000 + rng.permutation(rows)))
    assert "integer code" in integer_role("dropoff_community_area",
                                          pd.Series(rng.integers(1, 78, rows)))
    assert "integer time" in integer_role("pickup_timestamp",
                                          pd.Series(rng.integers(0, 10**6, rows)))
    assert integer_role("tenure", pd.Series(rng.integers(0, 72, rows))) is None
    assert integer_role("income", pd.Series(rng.permutation(rows) * 37)) is None
    dates = pd.Series(pd.date_range("2026-01-01", periods=rows).astype(str))
    assert "date or time" in text_role("signup_date", dates)
    assert text_role("plan", pd.Series(["a", "b"] * 250)) is None


def test_a_column_computed_from_the_label_is_a_leak():
    rng = np.random.default_rng(1)
    label = (rng.random(2000) < 0.3).astype(int)
    frame = pd.DataFrame({"fee": np.where(label == 1, rng.choice([30, 45], 2000), 0),
                          "noise": rng.normal(size=2000),
                          "word": np.where(label == 1, "gone", "stayed"),
                          "city": rng.choice(list("abcdef"), 2000)})
    found = leaks(frame, label, list(frame.columns))
    assert set(found) == {"fee", "word"} and min(found.values()) >= 0.98
    assert 0.45 < single_column_auc(frame["noise"], label) < 0.6
    assert single_column_auc(frame["noise"], np.zeros(2000, int)) is None
