"""Tests of the KS/VIF baseline: transforms, VIF, KS, model, CLI errors and the shipped figures."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import SAMPLE_CSV
import refactored_code as rc
from cartola.data import sample_data

# The study's figures on its private data; the baseline must land within TOLERANCE of them.
STUDY = {"precision": 0.81, "recall": 0.75, "ks": 0.60, "mean_score_pos": 0.73,
         "mean_score_neg": 0.24}
TOLERANCE = 0.05
STUDY_REMOVED = {"log_interacoes_g1", "norm_rodadas", "rel_pont", "dif_melhoria",
                 "log_iteracao_atletismo", "max_camp", "log_anos_desde_criacao"}


def _nan_equal(actual, expected):
    """Element-wise equality where NaN matches NaN."""
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, float))


# --- Transforms ---------------------------------------------------------------------------

def test_log1p_is_per_value_and_drops_negative_missing_and_text():
    values = pd.Series([0, 9, -1, None, "abc", 99.0], dtype=object)
    _nan_equal(rc.log1p_nonnegative(values),
               [0.0, math.log(10), np.nan, np.nan, np.nan, math.log(100)])


def test_total_pixels_parses_resolution_and_rejects_malformed():
    values = pd.Series(["1920x1080", " 1280 X 720 ", "1920x", "x1080", "1366*768", "0x0",
                        "unknown", None, "1x1x1"])
    _nan_equal(rc.total_pixels(values),
               [1920 * 1080, 1280 * 720] + [np.nan] * 7)


def test_total_pixels_of_an_all_missing_column():
    _nan_equal(rc.total_pixels(pd.Series([np.nan, np.nan])), [np.nan, np.nan])


def test_clip_at_caps_only_large_values():
    _nan_equal(rc.clip_at(pd.Series([0.2, 1.0, 1.7, np.nan, -0.1])),
               [0.2, 1.0, 1.0, np.nan, -0.1])


def test_engineer_features_replaces_raw_columns_and_keeps_id_and_label():
    raw = pd.DataFrame({"id": [1, 2, 3], "avg_3": [0.5, 1.4, np.nan],
                        "tempo_desperd": [-1.0, 0.0, np.nan], "pixels": ["2x3", "bad", None],
                        "escalacoes": [1, 2, 3], "pro_target": [0, 1, 0]})
    before = raw.copy()
    out = rc.engineer_features(raw)
    assert list(out.columns) == ["id", "ceil_avg_3", "log_tempo_desperd", "total_pixels",
                                 "escalacoes", "pro_target"]
    _nan_equal(out["ceil_avg_3"], [0.5, 1.0, np.nan])
    _nan_equal(out["log_tempo_desperd"], [np.nan, 0.0, np.nan])
    _nan_equal(out["total_pixels"], [6.0, np.nan, np.nan])
    pd.testing.assert_series_equal(out["pro_target"], raw["pro_target"])
    pd.testing.assert_series_equal(out["id"], raw["id"])
    pd.testing.assert_frame_equal(raw, before)  # input untouched


# --- VIF ----------------------------------------------------------------------------------

def _collinear_frame(n_rows=500, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n_rows), "b": rng.normal(size=n_rows),
                          "d": rng.normal(size=n_rows)})
    frame["planted"] = frame["a"] + frame["b"] + 0.1 * rng.normal(size=n_rows)
    return frame


def test_vif_elimination_removes_exactly_the_planted_column():
    frame = _collinear_frame()
    vifs = rc.vif_table(frame)
    assert vifs.idxmax() == "planted" and vifs["planted"] > 100
    assert rc.eliminate_collinear(frame) == (["a", "b", "d"], ["planted"])


def test_vif_threshold_is_a_parameter_and_missing_values_are_tolerated():
    frame = _collinear_frame()
    assert not rc.eliminate_collinear(frame, threshold=1e6)[1]
    frame.loc[::10, "a"] = np.nan
    assert rc.eliminate_collinear(frame, threshold=3.0)[1] == ["planted"]


def test_exact_duplicate_has_infinite_vif_and_goes_first():
    frame = _collinear_frame()
    frame["copy"] = frame["d"]
    assert rc.vif_table(frame)["copy"] > 1e8  # infinite, or as good as
    removed = rc.eliminate_collinear(frame)[1]
    assert len(removed) == 2 and removed[0] in ("copy", "d") and removed[1] == "planted"


# --- KS and model -------------------------------------------------------------------------

def test_ks_on_known_samples():
    assert rc.ks_statistic([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert rc.ks_statistic([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.0
    # Interleaved: positives {0.2, 0.4, 0.6, 0.8}, negatives {0.1, 0.3, 0.5, 0.7}.
    assert rc.ks_statistic([0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5, 0.7],
                           [1, 1, 1, 1, 0, 0, 0, 0]) == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    scores, labels = rng.random(300), rng.integers(0, 2, 300)
    assert rc.ks_statistic(scores, labels) == pytest.approx(
        stats.ks_2samp(scores[labels == 1], scores[labels == 0]).statistic)


def test_ks_needs_both_classes():
    with pytest.raises(ValueError):
        rc.ks_statistic([0.1, 0.2], [0, 0])


def _model_frame(n_rows=1200, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"signal": rng.normal(size=n_rows), "weak": rng.normal(size=n_rows),
                          "noise": rng.normal(size=n_rows)})
    logit = 2.0 * frame["signal"] + 0.8 * frame["weak"]
    frame["pro_target"] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.loc[::7, "signal"] = np.nan
    return frame


def test_fit_logistic_reports_metrics_and_fits_on_train_only():
    frame = _model_frame()
    train, test = frame.iloc[:800], frame.iloc[800:]
    result = rc.fit_logistic(train, test, ["signal", "weak", "noise"])
    for key in ("precision", "recall", "ks", "auc", "mean_score_pos", "mean_score_neg"):
        assert 0.0 <= result[key] <= 1.0
    assert result["scores"].shape == (len(test),)
    assert result["mean_score_pos"] > result["mean_score_neg"]
    assert result["ks"] == pytest.approx(rc.ks_statistic(result["scores"],
                                                         test["pro_target"]))
    coefficients = result["coefficients"]
    assert set(coefficients) == {"signal", "weak", "noise"}
    assert coefficients["signal"] > coefficients["weak"] > abs(coefficients["noise"])
    # Changing the test rows changes the scores, never the fitted model.
    shifted = test.assign(signal=test["signal"] + 100)
    assert rc.fit_logistic(train, shifted, ["signal", "weak", "noise"])["coefficients"] \
        == pytest.approx(coefficients)


def test_pruning_stops_before_ks_drops():
    frame = _model_frame(n_rows=3000)
    kept, pruned = rc.prune_by_coefficient(frame, ["signal", "weak", "noise"])
    assert kept == ["signal", "weak"] and pruned == ["noise"]
    assert rc.prune_by_coefficient(frame, ["signal", "weak", "noise"], tolerance=1.0)[0] \
        == ["signal"]


# --- Bad input ----------------------------------------------------------------------------

def _error_line(capsys, argv):
    code = rc.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and captured.out == ""
    return lines[0]


def _csv(tmp_path, text, name="users.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, expected", [
    (None, "not found"),
    ("", "empty"),
    ("id,escalacoes,pro_target\n", "no rows"),
    ("id,escalacoes,label\n1,3,0\n2,4,1\n", "'pro_target' not found"),
    ("id,escalacoes,pro_target\n1,3,0\n2,4,2\n", "'2'"),
    ("id,escalacoes,pro_target\n1,3,0\n2,4,yes\n", "'yes'"),
    ("id,escalacoes,pro_target\n1,3,0\n2,4,\n", "missing"),
    ("id,escalacoes,pro_target\n1,3,1\n2,4,1\n", "only the value 1"),
    ("id,pixels,city,pro_target\n1,bad,Rio,0\n2,,SP,1\n", "no usable feature"),
])
def test_bad_input_exits_2_with_one_line_naming_the_problem(tmp_path, capsys, text, expected):
    path = tmp_path / "missing.csv" if text is None else _csv(tmp_path, text)
    line = _error_line(capsys, ["--data", str(path), "--out", str(tmp_path / "plots")])
    assert expected in line and str(path) in line
    assert not (tmp_path / "plots").exists()


def test_bad_vif_threshold_exits_2(tmp_path, capsys):
    path = sample_data.write_csv(tmp_path / "small.csv", n_rows=200, seed=1)
    line = _error_line(capsys, ["--data", str(path), "--vif-threshold", "0.5"])
    assert "VIF threshold" in line and "0.5" in line


def test_cli_other_target_and_output_folder(tmp_path, capsys):
    frame = sample_data.generate(3000, seed=2).rename(columns={"pro_target": "is_pro"})
    path = tmp_path / "renamed.csv"
    frame.to_csv(path, index=False)
    assert rc.main(["--data", str(path), "--target", "is_pro", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("precision:", "recall:", "KS:", "removed collinear features", "final features"):
        assert text in out
    assert {p.name for p in tmp_path.glob("baseline_*.png")} == set(rc.PLOT_FILES)


# --- The shipped data reproduces the study ------------------------------------------------

@pytest.fixture(name="shipped", scope="module")
def fixture_shipped(tmp_path_factory):
    """The whole baseline on the shipped sample, run once."""
    return rc.run_baseline(SAMPLE_CSV,
                           out_dir=tmp_path_factory.mktemp("plots"))


def test_shipped_data_reproduces_the_study_figures(shipped):
    for key, expected in STUDY.items():
        assert abs(shipped[key] - expected) <= TOLERANCE, (key, shipped[key])
    assert 0.35 <= shipped["positives"] / shipped["rows"] <= 0.45


def test_shipped_data_removes_and_keeps_the_study_features(shipped):
    assert set(shipped["removed"]) == STUDY_REMOVED
    assert sorted(shipped["final_features"]) == sorted(rc.FINAL_FEATURES)
    # Pruning leaves the results unchanged, as in the study.
    assert abs(shipped["ks"] - shipped["all_vif_metrics"]["ks"]) <= 0.01


def test_shipped_run_writes_the_figures(shipped):
    assert [path.name for path in shipped["plots"]] == list(rc.PLOT_FILES)
    for path in shipped["plots"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
