"""The drift and skew gate's verdict on real TFDV statistics, and its report section."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

tfdv = pytest.importorskip("tensorflow_data_validation")

# pylint: disable=wrong-import-position
from cartola.validation import drift

SETTINGS = {"features": ["x", "kind"], "drift_threshold": 0.1, "skew_threshold": 0.1,
            "action": "stop"}


def _frame(seed: int, shift: float = 0.0, kinds=("a", "b", "c")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(5.0 + shift, 1.0, 4000),
                         "kind": rng.choice(list(kinds), 4000),
                         "other": rng.normal(0.0, 1.0, 4000)})


def _stats(frame: pd.DataFrame):
    return tfdv.generate_statistics_from_dataframe(frame)


@pytest.fixture(name="base", scope="module")
def fixture_base():
    """(statistics of a train split, an eval split, a later normal span, schema)."""
    train = _stats(_frame(1))
    return train, _stats(_frame(2)), _stats(_frame(3)), tfdv.infer_schema(train)


def _check(base, statistics, baseline, **settings):
    train, eval_split, _, schema = base
    return drift.check({"train": statistics or train, "eval": eval_split, "baseline": baseline},
                       schema, {**SETTINGS, **settings}, "2026-11-23",
                       "2026-11-16" if baseline is not None else None)


def test_first_run_measures_skew_only_and_passes(base):
    result = _check(base, None, None)
    assert result["status"] == "passed" and result["problems"] == []
    assert {(row["kind"], row["feature"]) for row in result["measurements"]} == {
        ("skew", "x"), ("skew", "kind")}  # only configured model features


def test_normal_change_passes(base):
    result = _check(base, base[2], base[0])
    kinds = {row["kind"] for row in result["measurements"]}
    assert kinds == {"drift", "skew"} and result["status"] == "passed"
    assert all(row["value"] < 0.05 for row in result["measurements"])


def test_shift_stops_naming_feature_measure_value_and_threshold(base):
    result = _check(base, _stats(_frame(4, shift=2.5)), base[0])
    assert result["status"] == "failed"
    (line,) = [line for line in result["problems"] if line.startswith("[drift]")]
    value = next(row["value"] for row in result["measurements"]
                 if row["kind"] == "drift" and row["feature"] == "x")
    assert value > 0.1
    assert line.startswith(f"[drift] feature 'x': Jensen-Shannon divergence {value:.4f} is "
                           "above the threshold 0.1 (span 2026-11-23 against span 2026-11-16, "
                           "the served model's training data; floor 0.1; noise at ")


def test_label_share_doubled_stops_naming_the_label(base):
    train, eval_split, _, schema = base
    rng = np.random.default_rng(9)
    with_label = [_stats(_frame(seed).assign(y=(rng.random(4000) < share).astype(int)))
                  for seed, share in ((1, 0.05), (2, 0.10), (3, 0.10))]
    result = drift.check({"train": with_label[2], "eval": with_label[1],
                          "baseline": with_label[0]}, schema,
                         {**SETTINGS, "label": "y", "label_odds_ratio": 1.5}, "b", "a")
    rows = {(row["kind"], row["feature"]): row for row in result["measurements"]}
    assert rows[("drift", "y")]["failed"] and not rows[("skew", "y")]["failed"]
    assert any(line.startswith("[drift] label 'y': positive share 0.1")
               for line in result["problems"]), result["problems"]
    del train, eval_split


def test_categorical_drift_and_warn_mode(base):
    shifted = _stats(_frame(5, kinds=("a", "d", "e")))
    result = _check(base, shifted, base[0], action="warn")
    assert result["status"] == "warned"
    assert any("feature 'kind'" in line for line in result["problems"])


def test_schema_threshold_wins(base):
    train, eval_split, _, schema = base
    loose = type(schema)()
    loose.CopyFrom(schema)
    tfdv.get_feature(loose, "x").drift_comparator.jensen_shannon_divergence.threshold = 0.99
    result = drift.check({"train": _stats(_frame(4, shift=2.5)), "eval": eval_split,
                          "baseline": train}, loose, SETTINGS, "b", "a")
    row = next(r for r in result["measurements"] if (r["kind"], r["feature"]) == ("drift", "x"))
    assert row["threshold"] == pytest.approx(0.99) and not row["failed"]


def _write_stats(folder, statistics):
    for split in ("train", "eval"):
        (folder / f"Split-{split}").mkdir(parents=True)
        (folder / f"Split-{split}" / "FeatureStats.pb").write_bytes(
            statistics.SerializeToString())


def test_report_section_draws_both_spans(base, tmp_path):
    # pylint: disable=import-outside-toplevel
    from types import SimpleNamespace

    from cartola.reports.drift_section import drift_section
    shifted = _stats(_frame(4, shift=2.5))
    result = _check(base, shifted, base[0], action="warn")
    _write_stats(tmp_path / "now", shifted)
    _write_stats(tmp_path / "before", base[0])
    result.update(statistics=str(tmp_path / "now"), baseline_statistics=str(tmp_path / "before"))
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / drift.DRIFT_FILE).write_text(json.dumps(result), encoding="utf-8")
    run = SimpleNamespace(output_uri=lambda node, key: str(tmp_path / "gate"), executions={})
    summary, pngs = {}, {}
    page = drift_section(None, run, summary, pngs)
    assert "Drift gate: warned" in page and "trained anyway" in page
    assert "feature &#x27;x&#x27;" in page and 'alt="drift per feature"' in page
    assert pngs["drift"].startswith(b"\x89PNG")
    assert summary["drift"]["status"] == "warned"
