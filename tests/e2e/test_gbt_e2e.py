"""A gradient-boosted trees model through the whole life of a version: pushed by the real
pipeline (version 2, after a linear version 1), served by `cartola serve` in its own process
(TF-DF's ops registered from the model's record), scored by `cartola score` in another,
listed by `cartola models`, and rolled back to the linear version."""
# pylint: disable=import-outside-toplevel,redefined-outer-name
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_CSV, make_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def linear_then_gbt(tmp_path_factory):
    """(config, run results): version 1 linear, version 2 gbt, on the sample data. The
    second run reuses the first's Transform (the family is not part of its cache key)."""
    from cartola.orchestration.local import run_local
    home = tmp_path_factory.mktemp("gbt_project")
    first = run_local(make_config(home, model_family="linear"))
    assert first["pushed_version"] == 1, first
    # Trees may trail the linear model a little on this logistic sample; the test is about
    # what happens to a tree model downstream, so a small regression is allowed.
    config = make_config(home, model_family="gbt", max_regression=0.5)
    second = run_local(config)
    assert second["pushed_version"] == 2, second
    return config, second


def _env(config) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(config.project_home), CARTOLA_DATA_ROOT=str(config.data_dir),
               CARTOLA_SCHEMA_PATH=str(config.schema_path), CARTOLA_REQUEST_LOG_SAMPLE="0")
    return env


def _cartola(config, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cartola.cli", *args], env=_env(config),
                          capture_output=True, text=True, timeout=600, check=False, **kwargs)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def _predict(url: str, rows):
    request = urllib.request.Request(url, data=json.dumps({"instances": rows}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.headers["X-Model-Version"], json.loads(response.read())


WORKERS = 2


class _Output:
    """The server's console lines, read in a thread (a full pipe would stall the server)."""

    def __init__(self, process):
        self.process = process
        self.lines: list = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))

    def wait_for(self, text: str, count: int, seconds: float = 300) -> None:
        """Until ``count`` lines contain ``text`` (one per worker, say)."""
        deadline = time.monotonic() + seconds
        while sum(text in line for line in self.lines) < count:
            assert self.process.poll() is None, "".join(self.lines[-30:])
            assert time.monotonic() < deadline, f"no {count} x {text!r}: " + "".join(
                self.lines[-30:])
            time.sleep(0.2)


def _served_everywhere(url: str, rows, version: int) -> None:
    """The status and ten predictions on fresh connections (spread over the workers by the
    kernel) all answer ``version``."""
    status, body = _get(url)
    assert status == 200 and body["model_version_status"][0]["version"] == str(version)
    for _ in range(10):
        assert _predict(f"{url}:predict", rows)[:2] == (200, str(version))


def test_version_2_is_a_tree_model_that_records_its_ops(linear_then_gbt):
    from cartola.models import model_info
    config, _ = linear_then_gbt
    first = model_info.read_info(config.model_serving_dir / "1")
    second = model_info.read_info(config.model_serving_dir / "2")
    assert (first["family"], first["ops_modules"]) == ("linear", [])
    assert (second["family"], second["ops_modules"]) == ("gbt", ["tensorflow_decision_forests"])
    assert [c["family"] for c in second["candidates"]] == ["gbt"]
    assert 0.8 < second["candidates"][0]["auc"] < 1
    assert list((config.model_serving_dir / "2" / "assets").glob("*header.pb"))  # the forest
    listed = _cartola(config, "models")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1] if line.startswith("*") else line.split()[0]: line
             for line in listed.stdout.splitlines()[1:3]}
    assert lines["2"].startswith("*") and lines["2"].endswith("; gbt"), listed.stdout
    assert lines["1"].endswith("; linear"), listed.stdout


def test_gbt_served_scored_and_rolled_back(linear_then_gbt, tmp_path):
    from cartola.orchestration.services import free_port
    from cartola.serving.model import ServedModel
    config, _ = linear_then_gbt
    sample = pd.read_csv(SAMPLE_CSV, nrows=300)
    sample[list(config.numeric_features) + [config.id_column, config.label]].to_csv(
        tmp_path / "users.csv", index=False)
    rows = sample[list(config.numeric_features)].head(20).to_dict("records")
    in_process = ServedModel.load(config.model_serving_dir / "2").predict_instances(rows)

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/{config.model_name}"
    with subprocess.Popen([sys.executable, "-m", "cartola.cli", "serve", "--port", str(port),
                           "--poll-seconds", "1", "--workers", str(WORKERS)], env=_env(config),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as server:
        output = _Output(server)
        try:
            output.wait_for("ready: version 2", WORKERS)
            _served_everywhere(url, rows, 2)
            status, version, body = _predict(f"{url}:predict", rows)
            assert (status, version) == (200, "2")
            served = np.array(body["predictions"]).reshape(-1)
            np.testing.assert_allclose(served, in_process, rtol=1e-5)
            assert np.all((served > 0) & (served < 1)) and served.std() > 0.05

            scored = _cartola(config, "score", str(tmp_path / "users.csv"),
                              str(tmp_path / "scores.csv"), "--no-progress")
            assert scored.returncode == 0, scored.stderr
            scores = pd.read_csv(tmp_path / "scores.csv")
            assert len(scores) == 300 and scores["probability"].between(0, 1).all()
            # Scores are written with 6 decimals: half a unit of the last one apart at most.
            np.testing.assert_allclose(scores["probability"].head(20), in_process,
                                       rtol=0, atol=5.1e-7)
            labels = sample[config.label].to_numpy()
            assert (scores["probability"][labels == 1].mean()
                    > scores["probability"][labels == 0].mean() + 0.2)

            back = _cartola(config, "rollback", "--reason", "trees on trial")
            assert back.returncode == 0 and "serving version 1 (was 2)" in back.stdout, back
            # Each worker watches the pin on its own: wait until every one has swapped.
            output.wait_for(f"serving {config.model_name} version 1", WORKERS)
            _served_everywhere(url, rows, 1)
            status, version, body = _predict(f"{url}:predict", rows)
            assert (status, version) == (200, "1")
            assert not np.allclose(np.array(body["predictions"]).reshape(-1), in_process)
        finally:
            server.terminate()
            server.wait(timeout=60)
