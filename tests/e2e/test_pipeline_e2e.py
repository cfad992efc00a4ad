"""The real TFX pipeline (LocalDagRunner) end to end on the sample data and on bad data."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SAMPLE_CSV
from pipeline_helpers import (examples_frame, executions_by_state, first_output, read_sample,
                              tree_digest, write_csv)
from receivers import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _overall_metrics(evaluation_dir):
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    result = tfma.load_eval_result(str(evaluation_dir))
    for slice_key, metrics in result.slicing_metrics:
        if slice_key == ():
            return {name: next(iter(value.values()))
                    for name, value in metrics[""][""].items()}
    raise AssertionError("no overall slice")


def test_first_run_pushes_version_1_that_scores_raw_examples(pushed_project):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from cartola.published.versions import model_versions  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    assert model_versions(config.model_serving_dir) == [1]
    model = tf.saved_model.load(str(config.model_serving_dir / "1"))
    rows = pd.read_csv(SAMPLE_CSV, nrows=50)
    examples = []
    for _, row in rows.iterrows():  # raw features only: no label needed to score
        feats = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
                 if isinstance(row[name], float) else
                 tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
                 for name in config.numeric_features if pd.notna(row[name])}
        examples.append(tf.train.Example(features=tf.train.Features(feature=feats))
                        .SerializeToString())
    scores = model.signatures["serving_default"](examples=tf.constant(examples))
    probability = scores["probability"].numpy().ravel()
    assert probability.shape == (50,) and np.all(np.isfinite(probability))
    assert np.all((probability >= 0) & (probability <= 1)) and probability.std() > 0.1


def test_tfx_ks_matches_baseline_on_same_eval_split(pushed_project):
    import refactored_code  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    examples = first_output(config, "CsvExampleGen", "examples")
    train = refactored_code.engineer_features(examples_frame(examples / "Split-train"))
    test = refactored_code.engineer_features(examples_frame(examples / "Split-eval"))
    baseline = refactored_code.fit_logistic(train, test, refactored_code.FINAL_FEATURES,
                                            target=config.label)
    tfx_metrics = _overall_metrics(first_output(config, "Evaluator", "evaluation"))
    assert tfx_metrics["example_count"] == len(test)
    assert tfx_metrics["ks"] == pytest.approx(baseline["ks"], abs=0.02), (tfx_metrics, baseline)
    assert tfx_metrics["ks"] >= config.min_ks and tfx_metrics["auc"] >= config.min_auc


def test_second_run_is_cached_and_pushes_nothing_worse(pushed_project):
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    before = tree_digest(config.path(config.serving_dir))
    result = run_local(config)
    states = executions_by_state(config)
    for component in ("CsvExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert states[component][-1] == "CACHED", (component, states[component])
    # The same model (same fingerprint) is not published a second time, and the run says so.
    assert result["pushed_version"] is None
    assert tree_digest(config.path(config.serving_dir)) == before
    from cartola.reports.outcome import why_not_pushed  # pylint: disable=import-outside-toplevel
    assert why_not_pushed(config) == "the blessed model is identical to the served version 1"


def test_shuffled_label_is_not_blessed_and_serving_is_unchanged(pushed_project, tmp_path):
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    frame = read_sample()
    frame[config.label] = np.random.default_rng(0).permutation(frame[config.label].to_numpy())
    before = tree_digest(config.path(config.serving_dir))
    result = run_local(config, write_csv(frame, tmp_path / "shuffled"))
    assert result["pushed_version"] is None
    assert tree_digest(config.path(config.serving_dir)) == before
    from cartola.reports.outcome import why_not_pushed  # pylint: disable=import-outside-toplevel
    reason = why_not_pushed(config)  # the floors, with the values that missed them
    assert reason.startswith("not blessed: ") and "ks 0." in reason, reason
    assert "is below the floor 0.4" in reason and "auc 0." in reason, reason
    assert executions_by_state(config)["Evaluator"][-1] == "COMPLETE"


def _missing_column(frame):
    return frame.drop(columns=["escalacoes"])


def _extra_column(frame):
    return frame.assign(coluna_nova=1)


def _label_two(frame):
    frame.loc[10, "pro_target"] = "2"
    return frame


def _string_in_numeric(frame):
    frame["avg_3"] = frame["avg_3"].astype(object)
    frame.loc[5, "avg_3"] = "abc"
    return frame


def _all_missing_feature(frame):
    frame["tempo_desperd"] = np.nan
    return frame


@pytest.mark.parametrize("corrupt, expected", [
    (_missing_column, "'escalacoes'"),
    (_extra_column, "'coluna_nova'"),
    (_label_two, "'pro_target'"),
    (_string_in_numeric, "'avg_3'"),
    (_all_missing_feature, "'tempo_desperd'"),
])
def test_bad_data_stops_at_validation(pushed_project, tmp_path, corrupt, expected):
    from cartola.errors import DataValidationError  # pylint: disable=import-outside-toplevel
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    frame = corrupt(read_sample(nrows=3000))
    before = tree_digest(config.path(config.serving_dir))
    with pytest.raises(DataValidationError, match=expected) as raised:
        run_local(config, write_csv(frame, tmp_path / "bad"))
    named = [line for line in str(raised.value).splitlines() if "feature '" in line]
    assert named and all(expected in line for line in named), str(raised.value)
    assert tree_digest(config.path(config.serving_dir)) == before
    assert executions_by_state(config)["Transform"][-1] != "RUNNING"


@pytest.mark.parametrize("content, expected",
                         [("", "empty file"), ("id,pro_target\n", "header only")])
def test_empty_input_file_is_rejected_before_the_run(pushed_project, tmp_path, content, expected):
    from cartola.errors import InputDataError  # pylint: disable=import-outside-toplevel
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    (tmp_path / "in.csv").write_text(content)
    before = tree_digest(config.path(config.serving_dir))
    with pytest.raises(InputDataError, match=rf"in.csv:\d: {expected}"):
        run_local(config, str(tmp_path))
    assert tree_digest(config.path(config.serving_dir)) == before


def test_example_config_with_categorical_features(tmp_path):
    """The same code on another binary-label CSV, configured by examples/streaming_churn."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    example = REPO / "examples" / "streaming_churn"
    config = load_config(example / "config.toml", environ={}, project_home=str(tmp_path),
                         data_root=str(example / "data"),
                         schema_path=str(example / "schema.pbtxt"))
    assert config.categorical_features == ("plan", "region")
    result = run_local(config)
    assert result["pushed_version"] == 1
    model = tf.saved_model.load(str(config.model_serving_dir / "1"))
    scores = model.signatures["predict_raw"](
        tenure_months=tf.constant([2.0, 60.0]), monthly_fee=tf.constant([19.9, 45.9]),
        support_tickets=tf.constant([5.0, 0.0]), hours_watched=tf.constant([1.0, float("nan")]),
        plan=tf.constant(["basic", "plan-never-seen"]), region=tf.constant(["north", ""]),
    )["probability"].numpy().ravel()
    assert np.all((scores > 0) & (scores < 1))
    assert scores[0] > scores[1]  # short tenure, many tickets, little viewing: churn


def test_cli_run_on_bad_data_exits_3_and_reports_the_anomaly(pushed_project, tmp_path,
                                                             monkeypatch, capsys):
    """`cartola run` as the README runs it: exit code 3, the anomaly named, a run report, and
    one data_rejected notification naming the feature at the webhook."""
    from cartola.cli import main  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    for name in [name for name in os.environ if name.startswith("CARTOLA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARTOLA_HOME", str(config.project_home))
    monkeypatch.setenv("CARTOLA_SCHEMA_PATH", str(config.schema_path))
    bad = write_csv(_label_two(read_sample(nrows=3000)), tmp_path / "bad")
    before = tree_digest(config.path(config.serving_dir))
    with WebhookReceiver() as webhook:
        monkeypatch.setenv("CARTOLA_WEBHOOK_URL", webhook.url)
        assert main(["run", "--data-root", bad]) == 3
    out, err = capsys.readouterr()
    assert webhook.events() == ["data_rejected"], webhook.messages
    assert "feature 'pro_target'" in webhook.messages[0]["blocks"][0]["text"]["text"]
    assert webhook.messages[0]["fields"]["data"] == bad
    assert "notification" not in err  # delivered: nothing to warn about
    assert "'pro_target'" in err and "nothing trained or pushed" in err
    # Progress lines came as the components ran, ending at the gate that stopped the run.
    assert re.search(r"^\[\d+:\d\d\] CsvExampleGen finished in \d+\.\d s \(\d+/\d+ done\)$",
                     err, re.M), err
    assert re.search(r"^\[\d+:\d\d\] DataValidationGate started ", err, re.M), err
    report = Path(out.split("run report: ", 1)[1].split()[0])
    assert "pro_target" in report.read_text(encoding="utf-8")
    assert tree_digest(config.path(config.serving_dir)) == before
