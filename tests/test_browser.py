"""The Airflow UI in headless Chromium (Debian's ``chromium`` package, driven by Playwright):
log in, find the DAG, open its graph with every component, trigger it with a conf, and save
screenshots to assets/ for the README.

By default the test stops once the triggered run is executing (the scheduler test in
test_airflow_e2e.py proves runs complete). With ``CARTOLA_BROWSER_FULL_RUN=1`` it waits for
the run to succeed and also saves the finished graph (``assets/airflow_graph_success.png``).
"""
# pylint: disable=import-outside-toplevel,redefined-outer-name
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse

import pytest

from conftest import REPO, make_config
from pipeline_helpers import free_port
from cartola.orchestration.airflow_local import local_airflow
from cartola.orchestration import airflow_tasks, topology

pytestmark = pytest.mark.e2e

ASSETS = REPO / "assets"
DAG_ID = "cartola_pro"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FULL_RUN = os.environ.get("CARTOLA_BROWSER_FULL_RUN") == "1"


@pytest.fixture(scope="module")
def chromium():
    """Path of the system Chromium; missing is a failure in CI, a skip elsewhere."""
    if CHROMIUM is None:
        message = "chromium not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _log_in(page, local) -> None:
    page.goto(local.url + "/login/")
    page.fill("input#username", "admin")
    page.fill("input#password", local.admin_password())
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/home")


def _open_dag_graph(page, local) -> set:
    """From the DAG list to the DAG's graph; returns the task ids drawn."""
    dag_link = page.locator(f"a[href*='/dags/{DAG_ID}/grid']").first
    dag_link.wait_for()
    page.screenshot(path=str(ASSETS / "airflow_dags.png"))
    dag_link.click()
    page.wait_for_url(f"**/dags/{DAG_ID}/grid**")
    page.goto(f"{local.url}/dags/{DAG_ID}/grid?tab=graph")
    nodes = page.locator(".react-flow__node")  # Playwright pierces the shadow DOM
    nodes.first.wait_for()
    return {nodes.nth(i).get_attribute("data-id") for i in range(nodes.count())}


def _trigger_with_conf(page, conf: dict) -> None:
    """Trigger DAG w/ config; the conf editor is CodeMirror."""
    page.click("[aria-label='Trigger DAG']")
    page.click("text=Trigger DAG w/ config")
    page.wait_for_url(f"**/dags/{DAG_ID}/trigger**")
    page.evaluate("conf => document.querySelector('.CodeMirror').CodeMirror.setValue(conf)",
                  json.dumps(conf, indent=2))
    page.screenshot(path=str(ASSETS / "airflow_trigger.png"), full_page=True)
    page.click("button:has-text('Trigger')")
    page.wait_for_url(f"**/dags/{DAG_ID}/grid**")


def _screenshot_graph(page, local, run_id: str, name: str) -> None:
    page.goto(f"{local.url}/dags/{DAG_ID}/grid?tab=graph&dag_run_id="
              f"{urllib.parse.quote(run_id, safe='')}")
    page.locator(".react-flow__node").first.wait_for()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(ASSETS / name))


@pytest.mark.timeout(2400 if FULL_RUN else 600)
def test_login_find_graph_trigger_screenshot(chromium, tmp_path):
    from playwright.sync_api import sync_playwright
    config = make_config(tmp_path / "project", schedule="none")
    other_data = tmp_path / "other_data"
    other_data.mkdir()
    for csv in (REPO / "data").glob("*.csv"):
        shutil.copy(csv, other_data / csv.name)
    conf = {"data_root": str(other_data)}
    local = local_airflow(config, port=free_port(), export_config=True)
    local.start()
    ASSETS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.set_default_timeout(60_000)
            _log_in(page, local)
            assert _open_dag_graph(page, local) == (set(topology.NODES)
                                                    | {airflow_tasks.STATUS_TASK})
            _trigger_with_conf(page, conf)

            runs = local.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]
            assert len(runs) == 1 and runs[0]["conf"] == conf, runs
            run_id = runs[0]["dag_run_id"]
            deadline = time.monotonic() + 300
            while local.task_instances(DAG_ID, run_id)["CsvExampleGen"]["state"] != "running":
                assert time.monotonic() < deadline, "CsvExampleGen never started"
                time.sleep(1)
            _screenshot_graph(page, local, run_id, "airflow_graph.png")
            if FULL_RUN:
                assert local.wait_run(DAG_ID, run_id, timeout=2000) == "success"
                _screenshot_graph(page, local, run_id, "airflow_graph_success.png")
            browser.close()
    finally:
        local.stop()
    for name in ("airflow_dags.png", "airflow_trigger.png", "airflow_graph.png"):
        assert (ASSETS / name).stat().st_size > 10_000
