"""Weekly spans through the real pipeline (LocalDagRunner, in this process): the first span
pushes version 1; a span with a planted drift and one with a unit bug (years written as
months: anos_como_pro x 5) stop at the drift gate naming the feature, with serving unchanged
and the drift drawn in the run report; a missing span, an empty one and one with another
header stop before TFX, naming the span. (Span after span, champion against challenger on
the new span, runs through Airflow's backfill in test_airflow_e2e.)"""
# pylint: disable=import-outside-toplevel
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, SAMPLE_CSV, SCHEMA
from pipeline_helpers import executions_by_state, tree_digest
from receivers import closed_port_url
from cartola.data import sample_data

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(name="spans_home", scope="module")
def fixture_spans_home(tmp_path_factory, pushed_project):
    """(config file, data root): the shipped spans, the generator's planted-drift span
    (2026-11-23) and a unit-bug span (2026-11-30), in the session's pushed project (whose
    version 1 trained on the latest shipped span, 2026-11-16)."""
    config, result = pushed_project
    assert result["pushed_version"] == 1 and result["span"].name == "2026-11-16", result
    root = tmp_path_factory.mktemp("spans")
    data = root / "data"
    for folder in sorted((REPO / "data").glob("snapshot=*")):
        shutil.copytree(folder, data / folder.name)
    drifted = sample_data.write_spans(root / "generated", weeks=1, drift=True)[-1]
    assert drifted.parent.name == "snapshot=2026-11-23"
    shutil.copytree(drifted.parent, data / drifted.parent.name)
    unit_bug = pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False)
    unit_bug["anos_como_pro"] = (unit_bug["anos_como_pro"].astype(int) * 5).astype(str)
    (data / "snapshot=2026-11-30").mkdir()
    unit_bug.to_csv(data / "snapshot=2026-11-30" / SAMPLE_CSV.name, index=False)
    config_file = root / "config.toml"
    config_file.write_text(f'extends = "cartola"\nproject_home = "{config.project_home}"\n'
                           f'data_root = "{data}"\nschema_path = "{SCHEMA}"\n',
                           encoding="utf-8")
    return config_file, data


@pytest.fixture(name="cartola")
def fixture_cartola(spans_home, monkeypatch, capsys):
    """``cartola --config <spans project> ARGS`` in this process: (exit code, out, err)."""
    from cartola.cli import main
    for name in [n for n in os.environ if n.startswith("CARTOLA_")]:
        monkeypatch.delenv(name)

    def run(*args):
        code = main(["--config", str(spans_home[0]), *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _config(spans_home):
    from cartola.config import load_config
    return load_config(spans_home[0], environ={})


def _transforms(config) -> int:
    return len(executions_by_state(config).get("Transform", []))


def test_planted_drift_stops_at_the_drift_gate(spans_home, cartola, monkeypatch):
    """...and a webhook that is down changes nothing but one warning line."""
    config = _config(spans_home)
    serving, transforms = tree_digest(config.model_serving_dir), _transforms(config)
    webhook = closed_port_url("/services/T0/B0/drift-s3cr3t")
    monkeypatch.setenv("CARTOLA_WEBHOOK_URL", webhook)
    code, out, err = cartola("run", "--span", "2026-11-23")
    assert code == 3, (out, err)
    warnings = [line for line in err.splitlines() if "notification" in line]
    assert warnings == [f"cartola: warning: notification drift_stop not sent to webhook "
                        f"{webhook.split('/')[2]}: connection refused"], err
    assert "drift-s3cr3t" not in out + err
    assert "drift gate stopped the run with 1 problem" in err
    assert ("[drift] feature 'avg_3': Jensen-Shannon divergence " in err
            and "is above the threshold 0.02 (span 2026-11-23 against span 2026-11-16, the "
                "served model's training data; floor 0.02; noise at " in err), err
    assert "Traceback" not in err
    assert tree_digest(config.model_serving_dir) == serving
    assert _transforms(config) == transforms  # nothing trained
    report = next(line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("run report: "))
    page = Path(report).read_text(encoding="utf-8")
    assert "Drift gate: failed" in page and 'alt="drift per feature"' in page
    assert "Span 2026-11-23 against span 2026-11-16" in page


def test_unit_bug_in_the_latest_span_stops(spans_home, cartola):
    config = _config(spans_home)
    serving = tree_digest(config.model_serving_dir)
    code, _, err = cartola("run")  # the latest span: 2026-11-30
    assert code == 3, err
    problems = [line for line in err.splitlines() if line.strip().startswith("[drift]")]
    assert len(problems) == 1 and "feature 'anos_como_pro'" in problems[0], err
    assert "span 2026-11-30 against span 2026-11-16" in problems[0]
    assert tree_digest(config.model_serving_dir) == serving


def test_missing_empty_and_changed_spans_name_the_span(spans_home, cartola):
    config = _config(spans_home)
    serving = tree_digest(config.model_serving_dir)
    folder = spans_home[1] / "snapshot=2026-12-07"
    folder.mkdir()
    try:
        cases = [(("run", "--span", "2026-12-14"), "span 2026-12-14 not found under"),
                 (("run",), f"span 2026-12-07 ({folder}): empty")]
        for args, expected in cases:
            code, out, err = cartola(*args)
            assert (code, out) == (2, "") and err.count("\n") == 1, (code, out, err)
            assert expected in err, err
        header = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()[:3]
        (folder / "users.csv").write_text("\n".join(
            line.replace(",avg_3,", ",avg_three,") for line in header) + "\n", encoding="utf-8")
        code, out, err = cartola("run")
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert "span 2026-12-07: " in err and "lacks ['avg_3'] and has extra ['avg_three']" \
            in err and "(span 2026-11-30)" in err, err
    finally:
        shutil.rmtree(folder)
    assert tree_digest(config.model_serving_dir) == serving
