"""Run report: the first pipeline run's report holds its real TFMA metrics, blessing and
push, is one self-contained HTML file, and writes the PNGs the README shows."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLE_CSV, make_config
from pipeline_helpers import first_output
from cartola.cli import tools as tools_cli
from cartola.reports import run_report as report
from cartola.registry.history import report_path
from cartola.registry.runs import RegistryError, list_runs, node_timings


def test_ks_statistic_is_the_largest_cdf_gap():
    scores = np.array([0.1, 0.2, 0.25, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 0, 1, 1])
    assert report.ks_statistic(scores, labels) == pytest.approx((0.75, 0.25))
    assert np.isnan(report.ks_statistic(scores, np.ones(7, dtype=int))[0])


def _write_split(folder, records) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    folder.mkdir(parents=True)
    for part, chunk in enumerate((records[:5], records[5:])):
        with tf.io.TFRecordWriter(str(folder / f"data_tfrecord-{part}.gz"), "GZIP") as out:
            for features in chunk:
                example = tf.train.Example()
                for name, value in features.items():
                    target = example.features.feature[name]
                    (target.float_list if isinstance(value, float) else
                     target.int64_list).value.append(value)
                out.write(example.SerializeToString())


@pytest.mark.parametrize("kind", [int, float])
def test_read_examples_keeps_labelled_records_in_order_across_batches(tmp_path, monkeypatch,
                                                                      kind):
    # The first batch of 3 has no label at all; batches span the two files.
    records = [{"x": i, **({} if i < 3 or i % 4 == 1 else {"y": kind(i % 3 == 0)})}
               for i in range(12)]
    _write_split(tmp_path / "Split-eval", records)
    monkeypatch.setattr(report, "READ_BATCH", 3)
    serialized, labels = report.read_examples(str(tmp_path), "eval", "y")
    kept = [record for record in records if "y" in record]
    assert labels.tolist() == [int(record["y"]) for record in kept]
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    assert [tf.train.Example.FromString(s).features.feature["x"].int64_list.value[0]
            for s in serialized] == [record["x"] for record in kept]
    with pytest.raises(RegistryError, match="no train examples"):
        report.read_examples(str(tmp_path), "train", "y")


def test_no_metadata_is_a_clear_error(tmp_path, capsys, monkeypatch):
    with pytest.raises(RegistryError, match="run the pipeline first"):
        report.build_report(make_config(tmp_path))
    monkeypatch.delenv("CARTOLA_CONFIG", raising=False)
    monkeypatch.setenv("CARTOLA_HOME", str(tmp_path))
    assert tools_cli.main(["report"]) == 2
    assert "no ML Metadata database" in capsys.readouterr().err


@pytest.fixture(scope="module")
def first_run(pushed_project, tmp_path_factory):
    """Report of the session's first run (other tests may add runs later)."""
    config, _ = pushed_project
    run_id = list_runs(config)[0]
    assets = tmp_path_factory.mktemp("assets")
    path = report.build_report(config, run_id, assets_dir=assets)
    summary = json.loads((path.parent / "report.json").read_text())
    return config, path, summary, assets


def _tfma_overall(config):
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    result = tfma.load_eval_result(str(first_output(config, "Evaluator", "evaluation")))
    overall = dict(result.slicing_metrics)[()][""][""]
    return {name: value["doubleValue"] for name, value in overall.items()
            if "doubleValue" in value}


@pytest.mark.e2e
def test_report_holds_the_runs_real_metrics_and_decisions(first_run):
    config, path, summary, _ = first_run
    assert path == report_path(config, summary["run_id"])
    assert path.parent.parent == config.project_home / "reports"
    page = path.read_text(encoding="utf-8")
    tfma_metrics = _tfma_overall(config)
    for name in ("auc", "ks", "precision", "recall", "mean_label"):
        assert summary["metrics"][name] == pytest.approx(tfma_metrics[name], abs=1e-12)
        assert f"{tfma_metrics[name]:.4f}" in page, name
    assert summary["metrics"]["example_count"] == int(tfma_metrics["example_count"])
    assert summary["blessed"] is True and summary["validation_ok"] is True
    assert "Blessed: every threshold passed" in page
    assert summary["baseline_model"] is None and "no baseline model yet" in page
    assert summary["pushed"] is True and summary["pushed_version"] == "1"
    assert "Lineage of version 1" in page  # back to the input file it learned from
    assert f"input file: {SAMPLE_CSV}" in page
    assert summary["data_valid"] is True and summary["anomalies"] == []
    assert sum(summary["examples"].values()) == 20000
    assert f"{summary['examples']['train']:,} examples" in page
    assert "&gt;= 0.4" in page and "&gt;= 0.7" in page  # the KS and AUC gates
    assert "anos_como_pro = 0" in page  # the slice table


@pytest.mark.e2e
def test_scores_redrawn_from_the_model_agree_with_tfma(first_run):
    config, _, summary, _ = first_run
    scored = summary["scored_eval"]
    assert scored["examples"] == summary["metrics"]["example_count"]
    assert scored["ks"] == pytest.approx(summary["metrics"]["ks"], abs=0.01)
    assert scored["ks"] >= config.min_ks


@pytest.mark.e2e
def test_report_is_one_self_contained_file_and_writes_assets(first_run):
    _, path, summary, assets = first_run
    page = path.read_text(encoding="utf-8")
    assert 'src="http' not in page and 'href="http' not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 5
    expected = {"report_ks.png", "report_roc.png", "report_pr.png", "report_calibration.png",
                "report_features.png"}
    assert set(summary["assets"]) == expected
    for name in expected:
        for folder in (assets, path.parent):
            assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_latest_run_is_the_default_and_cli_prints_the_path(pushed_project, capsys, monkeypatch):
    config, _ = pushed_project
    monkeypatch.delenv("CARTOLA_CONFIG", raising=False)
    monkeypatch.setenv("CARTOLA_HOME", str(config.project_home))
    monkeypatch.setenv("CARTOLA_DATA_ROOT", str(config.data_dir))
    monkeypatch.setenv("CARTOLA_SCHEMA_PATH", str(config.path(config.schema_path)))
    assert tools_cli.main(["report", "--assets-dir", ""]) == 0
    printed = capsys.readouterr().out
    latest = list_runs(config)[-1]
    assert f"run report: {report_path(config, latest)}" in printed


@pytest.mark.e2e
def test_report_times_each_component(first_run):
    config, _, summary, _ = first_run
    nodes = {name: (state, seconds) for name, state, seconds in summary["nodes"]}
    assert nodes["Trainer"][0] == "COMPLETE" and nodes["Trainer"][1] > 0
    assert all(seconds >= 0 for _, seconds in nodes.values())
    line = node_timings(config, summary["run_id"])
    assert f"Trainer {nodes['Trainer'][1]:.1f} s" in line
