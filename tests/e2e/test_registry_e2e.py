"""Run history, lineage and rollback on the real pipeline: three runs (version 1 pushed, a
run that pushes nothing, version 2 pushed), then the commands a user runs, a rollback the
server follows, and a fourth run whose Evaluator baseline is the rolled-back-to version."""
# pylint: disable=import-outside-toplevel,redefined-outer-name
from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from conftest import ASSETS, CHROMIUM_ARGS, make_config
from pipeline_helpers import first_output, read_sample, tree_digest, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """(config, folder of run 3's data) after: v1 on the sample, the same data again
    (identical model: nothing pushed), v2 on another 15,000 rows."""
    from cartola.orchestration.local import run_local
    home = tmp_path_factory.mktemp("registry_project")
    # The challenger of run 3 may be a little worse than version 1 on run 3's eval split;
    # the test is about what the registry records, so a regression is allowed.
    config = make_config(home, max_regression=0.5)
    assert run_local(config)["pushed_version"] == 1
    assert run_local(config)["pushed_version"] is None
    other = write_csv(read_sample(skiprows=range(1, 5001)), home / "week2")
    assert run_local(config, other)["pushed_version"] == 2
    return config, other


@pytest.fixture
def cli(three_runs, monkeypatch, capsys):
    """Run ``cartola ARGS`` on the project; returns (exit code, stdout, stderr)."""
    from cartola.cli import main
    config, _ = three_runs
    for name in [n for n in os.environ if n.startswith("CARTOLA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARTOLA_HOME", str(config.project_home))
    monkeypatch.setenv("CARTOLA_SCHEMA_PATH", str(config.schema_path))
    monkeypatch.setenv("CARTOLA_MAX_REGRESSION", "0.5")

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_runs_lists_the_three_outcomes_and_writes_the_history_page(three_runs, cli,
                                                                  chromium):
    config, other = three_runs
    code, out, _ = cli("runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["start", "took", "trigger"]
    rows = lines[1:4]
    assert "pushed version 1" in rows[0] and "20,000 rows" in rows[0]
    assert "nothing pushed: identical to version 1" in rows[1]
    assert "pushed version 2" in rows[2] and "15,000 rows" in rows[2] and other in rows[2]
    assert all("cartola run" in row and " yes " in row for row in rows)
    page = config.project_home / "reports" / "index.html"
    assert lines[4] == f"history page: {page}"
    text = page.read_text(encoding="utf-8")
    assert text.count("<tr><td>") == 3 and "Serving now: <b>version 2</b>" in text
    assert "data:image/png;base64," in text  # the KS/AUC chart

    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        view = browser.new_page(viewport={"width": 1400, "height": 900})
        view.goto(page.as_uri())
        assert view.locator("tbody tr").count() == 3
        assert view.locator("img").first.evaluate("i => i.naturalWidth") > 300
        view.screenshot(path=str(ASSETS / "run_history.png"), full_page=True)
        browser.close()


def test_lineage_of_version_2_reaches_its_input_files(three_runs, cli):
    config, other = three_runs
    code, out, _ = cli("lineage", "2")
    assert code == 0, out
    assert out.startswith("version 2 (PushedModel) <- Pusher")
    for piece in ("model (Model) <- Trainer", "model_blessing (ModelBlessing) <- Evaluator",
                  "transform_graph (TransformGraph) <- Transform", "(Examples) <- CsvExampleGen",
                  "(Schema) <- ImportSchemaGen", "(ExampleStatistics) <- StatisticsGen",
                  "(ExampleAnomalies) <- ExampleValidator", f"input folder: {other}",
                  f"input file: {other}/data.csv"):
        assert piece in out, (piece, out)
    assert str(config.data_dir) not in out  # version 1's data is not version 2's
    code, out, _ = cli("lineage", "--data", other)
    assert code == 0 and out.strip().startswith("version 2: trained in run ")
    code, out, _ = cli("lineage", "--data", str(config.data_dir))
    assert out.strip().startswith("version 1: trained in run ") and "version 2" not in out


def _served_version(url: str, name: str) -> int:
    with urllib.request.urlopen(f"{url}/v1/models/{name}", timeout=10) as response:
        return int(json.loads(response.read())["model_version_status"][0]["version"])


def test_rollback_is_followed_by_the_server(three_runs, cli):
    from cartola.serving.app import create_app, start_background
    from cartola.serving.core import ModelRegistry
    config, _ = three_runs
    base = config.model_serving_dir
    registry = ModelRegistry(base, config.model_name, poll_seconds=0.5)
    registry.refresh()
    server = start_background(create_app(registry))
    registry.start()
    try:
        assert _served_version(server.url, config.model_name) == 2
        code, out, _ = cli("rollback", "--to", "1", "--reason", "v2 over-predicts churn")
        assert code == 0 and "serving version 1 (was 2)" in out
        deadline = time.monotonic() + registry.poll_seconds + 30  # poll, then load and warm up
        while _served_version(server.url, config.model_name) != 1:
            assert time.monotonic() < deadline, "the server did not follow the rollback"
            time.sleep(0.1)
    finally:
        registry.stop()
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["1", "2"]
    code, out, _ = cli("models")
    newest, oldest = (line.split() for line in out.splitlines()[1:3])
    assert code == 0 and newest[0] == "2" and oldest[:2] == ["*", "1"], out
    assert 0.4 < float(newest[1]) < 1 and 0.4 < float(oldest[2]) < 1  # KS of each version


def test_the_run_after_the_rollback_compares_with_version_1(three_runs):
    """Runs after the rollback test (pytest keeps the file's order)."""
    from cartola.orchestration.local import run_local
    from cartola.registry.runs import load_run
    config, other = three_runs
    assert json.loads((config.model_serving_dir / "served.json").read_text())["version"] == 1
    # The next run on run 3's data: the same challenger (cached Trainer), compared with
    # version 1's model (TFX's LatestBlessedModelStrategy would take version 2's, the newest
    # blessed one), and not pushed again under a new number.
    result = run_local(config, other)
    assert result["pushed_version"] is None
    run = load_run(config)
    baseline = run.inputs[("Evaluator", "baseline_model")]
    assert baseline.uri == str(first_output(config, "Trainer", "model"))  # run 1's model
    assert baseline.uri != run.inputs[("Evaluator", "model")].uri
    from cartola.reports.outcome import why_not_pushed
    assert "version 2, which is not served (rolled back)" in why_not_pushed(config)
    from cartola.registry.history import history
    last = history(config, last=1)[0]
    assert (last.pushed_version, last.outcome) == (None, "nothing pushed: cached, version 2")
    assert json.loads((config.model_serving_dir / "served.json").read_text())["version"] == 1


@pytest.mark.parametrize("args, message", [
    (("rollback", "--to", "9", "--reason", "r"), "version 9 does not exist"),
    (("promote", "5", "--reason", "r"), "5: not a SavedModel (missing saved_model.pb"),
])
def test_bad_rollback_is_one_line_and_changes_nothing(three_runs, cli, args, message):
    config, _ = three_runs
    (config.model_serving_dir / "5").mkdir(exist_ok=True)  # a malformed version folder
    try:
        before = tree_digest(config.model_serving_dir)
        code, out, err = cli(*args)
        assert code == 2 and not out and message in err and len(err.splitlines()) == 1
        assert tree_digest(config.model_serving_dir) == before
    finally:
        (config.model_serving_dir / "5").rmdir()


def test_missing_metadata_store_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from cartola.cli import main
    for name in [n for n in os.environ if n.startswith("CARTOLA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARTOLA_HOME", str(tmp_path))
    for args in (["runs"], ["lineage", "1"], ["models"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "no ML Metadata database" in err and len(err.splitlines()) == 1, err
