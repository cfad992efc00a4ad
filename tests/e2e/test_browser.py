"""The Airflow 3 UI of the production profile (PostgreSQL, LocalExecutor) in headless Chromium
(Debian's ``chromium`` package, driven by Playwright): log in through the FAB auth manager,
find the DAG with no "not for production" warning, open its graph with every component,
trigger it with a conf in the Monaco editor, and save screenshots to assets/ for the README.

It shares the production-profile Airflow with ``test_airflow_e2e.py`` (the session fixture
``postgres_airflow``); when that test's run finished, its all-green graph is saved too.
"""
# pylint: disable=import-outside-toplevel,redefined-outer-name
from __future__ import annotations

import json
import time

import pytest

from conftest import ASSETS, CHROMIUM_ARGS
from cartola.orchestration import airflow_tasks
from cartola.pipeline import topology
from cartola.orchestration.airflow_api import quote

pytestmark = pytest.mark.e2e

DAG_ID = "cartola_pro"
WARNINGS = ("not for production", "Do not use", "in production")


def _log_in(page, local) -> None:
    """FAB's login form, then back to the UI."""
    page.goto(local.url + "/")
    page.fill("input#username", "admin")
    page.fill("input#password", local.admin_password())
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")


def _show_graph(page, url: str) -> set:
    """Open ``url`` (a DAG or DAG-run page) in graph view; returns the task ids drawn."""
    page.goto(url)
    page.click("button[aria-label^='Show Graph']")
    nodes = page.locator(".react-flow__node")
    nodes.first.wait_for()
    collapse = page.locator("button[aria-label='Collapse Details Panel']")
    if collapse.count():
        collapse.first.click()
    fit = page.locator(".react-flow__controls-fitview")
    if fit.count():
        fit.first.click()
    page.wait_for_timeout(1500)
    return {nodes.nth(i).get_attribute("data-id") for i in range(nodes.count())}


def _trigger_with_conf(page, conf: dict) -> None:
    """Trigger ▸ Advanced Options ▸ Configuration JSON (a Monaco editor) ▸ Trigger."""
    page.locator("button:has-text('Trigger')").first.click()
    dialog = "[role=dialog][data-state=open]"
    page.click(f"{dialog} >> text=Advanced Options")
    page.locator(f"{dialog} .monaco-editor .view-line").first.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(conf, indent=2))
    # Monaco auto-closes the first brace: drop what follows the inserted text.
    page.keyboard.press("Shift+Control+End")
    page.keyboard.press("Delete")
    page.click(f"{dialog} >> text=Configuration JSON")  # blur: the form takes the value
    page.screenshot(path=str(ASSETS / "airflow_trigger.png"))
    page.locator(f"{dialog} button:has-text('Trigger')").click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")


@pytest.mark.timeout(900)
def test_production_ui_graph_trigger_screenshots(chromium, postgres_airflow):
    from playwright.sync_api import sync_playwright
    config, local = postgres_airflow
    example_gen = topology.example_gen(config.source)
    conf = {"span": "2026-11-09"}
    finished = [run for run in local.api.dag_runs(DAG_ID) if run["state"] == "success"]
    ASSETS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.set_default_timeout(60_000)
        _log_in(page, local)
        page.goto(local.url + "/dags")
        page.locator(f"a[href='/dags/{DAG_ID}']").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ASSETS / "airflow_dags.png"))
        text = page.inner_text("body")
        assert not [w for w in WARNINGS if w.lower() in text.lower()], text[:2000]

        expected = set(topology.nodes(config.source)) | {airflow_tasks.STATUS_TASK}
        assert _show_graph(page, f"{local.url}/dags/{DAG_ID}") == expected
        if finished:
            _show_graph(page, f"{local.url}/dags/{DAG_ID}/runs/{quote(finished[0]['dag_run_id'])}")
            page.screenshot(path=str(ASSETS / "airflow_graph_success.png"))

        page.goto(f"{local.url}/dags/{DAG_ID}")
        _trigger_with_conf(page, conf)
        (run,) = [r for r in local.api.dag_runs(DAG_ID) if r["conf"] == conf]
        deadline = time.monotonic() + 300
        while local.task_instances(DAG_ID, run["dag_run_id"])[example_gen]["state"] not in (
                "running", "success"):
            assert time.monotonic() < deadline, f"{example_gen} never started"
            time.sleep(1)
        _show_graph(page, f"{local.url}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'])}")
        page.screenshot(path=str(ASSETS / "airflow_graph.png"))
        browser.close()
    for name in ("airflow_dags.png", "airflow_trigger.png", "airflow_graph.png"):
        assert (ASSETS / name).stat().st_size > 10_000
