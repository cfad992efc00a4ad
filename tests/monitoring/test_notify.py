"""Notifications (cartola.monitoring.notify) against real receivers on 127.0.0.1: the Slack
JSON each event sends, receivers that are down, fail or hang (False and one warning line,
never an exception, never the URL's token in the log), Airflow connections as the webhook's
source, email through Airflow's send_email to an SMTP receiver, and the Airflow failure
callback's classification. No TensorFlow."""
# pylint: disable=redefined-outer-name,import-outside-toplevel,protected-access
from __future__ import annotations

import email
import json
import logging
import pickle
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import make_config
from receivers import SmtpReceiver, WebhookReceiver, closed_port_url
from cartola.config import NOTIFY_EVENTS
from cartola.errors import DataValidationError
from cartola.monitoring import notify
from cartola.orchestration import airflow_tasks
from cartola.pipeline import topology

TOKEN = "s3cr3t-t0ken"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A config with a short timeout; no webhook, no Airflow task around, no CARTOLA_*."""
    for name in [n for n in __import__("os").environ if n.startswith("CARTOLA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(notify, "_in_airflow", lambda: False)
    return make_config(tmp_path, notify_timeout_seconds=1.0)


@pytest.fixture
def airflow_env(tmp_path, monkeypatch):
    """Keep Airflow away from ~/airflow; no database is needed (connections from env)."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def _warnings(caplog) -> list:
    return [r for r in caplog.records if r.name == notify.LOGGER_NAME
            and r.levelno >= logging.WARNING]


def test_each_event_reaches_the_webhook_as_slack_json(config, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(notify.WEBHOOK_ENV, receiver.url)
        for event in NOTIFY_EVENTS:
            assert notify.notify(config, event, f"{event} title <x>", "line 1\nline 2 & more",
                                 {"run": "manual__1", "span": "2026-11-16", "empty": ""})
    assert receiver.events() == list(NOTIFY_EVENTS)
    assert receiver.paths == [receiver.path] * len(NOTIFY_EVENTS)
    message = receiver.messages[0]
    assert message["text"] == f"[{config.pipeline_name}] data rejected: data_rejected title <x>"
    assert message["pipeline"] == config.pipeline_name
    assert message["fields"] == {"run": "manual__1", "span": "2026-11-16"}  # empty left out
    section, fields = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"] == ("*data_rejected title &lt;x&gt;*\n"
                                       "```line 1\nline 2 &amp; more```")
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*run*\nmanual__1"},
                                {"type": "mrkdwn", "text": "*span*\n2026-11-16"}]
    assert not _warnings(caplog)
    assert TOKEN not in caplog.text and "127.0.0.1:" in caplog.text  # the host only


def test_long_text_and_many_fields_fit_slack_limits(config, monkeypatch):
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(notify.WEBHOOK_ENV, receiver.url)
        assert notify.notify(config, "run_failed", "t", "x" * 10000,
                             {f"f{i}": "v" * 3000 for i in range(12)})
    section, fields = receiver.messages[0]["blocks"]
    assert len(section["text"]["text"]) <= 3000 and "(cut)" in section["text"]["text"]
    assert len(fields["fields"]) == 10
    assert all(len(field["text"]) <= 2000 for field in fields["fields"])


def test_events_not_in_notify_on_are_not_sent(config, monkeypatch, caplog):
    config = config.replace(notify_on=("run_failed",))
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(notify.WEBHOOK_ENV, receiver.url)
        assert notify.notify(config, "version_pushed", "v2", "") is False
        assert notify.notify(config, "run_failed", "boom", "") is True
    assert receiver.events() == ["run_failed"]
    assert not _warnings(caplog)
    assert notify.wanted(config, "run_failed") and not notify.wanted(config, "version_pushed")


def test_no_channel_sends_nothing_quietly(config, caplog):
    assert notify.notify(config, "run_failed", "boom", "text") is False
    assert not _warnings(caplog)
    assert not notify.wanted(config, "run_failed")


@pytest.mark.parametrize("mode, reason", [("down", "connection refused"),
                                          ("error", "HTTP 500"),
                                          ("hang", "no answer within 1 s")])
def test_a_failing_receiver_costs_one_warning_line_and_false(config, monkeypatch, caplog, mode,
                                                             reason):
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver("hang" if mode == "down" else mode, f"/hook/{TOKEN}") as receiver:
        url = closed_port_url(f"/hook/{TOKEN}") if mode == "down" else receiver.url
        monkeypatch.setenv(notify.WEBHOOK_ENV, url)
        started = time.monotonic()
        assert notify.notify(config, "drift_stop", "drifted", "avg_3") is False
        seconds = time.monotonic() - started
    assert seconds < 5, seconds  # the timeout holds
    (warning,) = _warnings(caplog)
    host = url.split("/")[2]
    assert warning.getMessage() == (f"notification drift_stop not sent to webhook {host}: "
                                    + warning.getMessage().split(f"{host}: ", 1)[1])
    assert reason in warning.getMessage(), warning.getMessage()
    assert "\n" not in warning.getMessage()
    assert TOKEN not in caplog.text and "/hook" not in caplog.text


@pytest.mark.parametrize("url", [f"ftp://127.0.0.1/{TOKEN}", f"127.0.0.1/{TOKEN}",
                                 f"http://[::1/{TOKEN}", f"http://127.0.0.1:99999/{TOKEN}",
                                 f"http://127.0.0.1:1/a b/{TOKEN}"])
def test_a_bad_url_costs_one_warning_line_without_the_token(config, monkeypatch, caplog, url):
    monkeypatch.setenv(notify.WEBHOOK_ENV, url)
    assert notify.notify(config, "run_failed", "boom", "") is False
    (warning,) = _warnings(caplog)
    assert TOKEN not in caplog.text, caplog.text
    assert "\n" not in warning.getMessage()


def test_cli_warnings_go_to_stderr_as_one_line(config, monkeypatch, capsys):
    url = closed_port_url(f"/hook/{TOKEN}")
    monkeypatch.setenv(notify.WEBHOOK_ENV, url)
    with notify.warnings_to_stderr():
        assert notify.notify(config, "data_rejected", "bad", "pro_target") is False
    err = capsys.readouterr().err
    assert err == (f"cartola: warning: notification data_rejected not sent to webhook "
                   f"{url.split('/')[2]}: connection refused\n")
    assert notify.log.propagate and not notify.log.handlers  # restored


def test_connection_url_forms():
    def conn(**values):
        base = {"host": None, "schema": None, "port": None, "password": None, "conn_type": "http",
                "extra_dejson": {}}
        return SimpleNamespace(**{**base, **values})

    assert notify.connection_url(conn(extra_dejson={"url": "https://h/x"})) == "https://h/x"
    assert notify.connection_url(conn(host="https://hooks.slack.com/services",
                                      password="T0/B0/XX")) == \
        "https://hooks.slack.com/services/T0/B0/XX"
    assert notify.connection_url(conn(host="hooks.example.com", schema="http", port=8080,
                                      extra_dejson={"endpoint": "/api/hook"}, password="tok")) \
        == "http://hooks.example.com:8080/api/hook/tok"
    # A connection URI http://127.0.0.1:5000/hook/tok: type http, path kept as the schema.
    assert notify.connection_url(conn(host="127.0.0.1", port=5000, schema="hook/tok")) == \
        "http://127.0.0.1:5000/hook/tok"
    assert notify.connection_url(conn(host="example.com", conn_type="generic")) == \
        "https://example.com"
    assert notify.connection_url(conn()) is None


@pytest.mark.usefixtures("airflow_env")
def test_webhook_from_the_airflow_connection_inside_a_task(config, monkeypatch, caplog):
    monkeypatch.setattr(notify, "_in_airflow", lambda: True)
    assert notify.notify(config, "run_failed", "no connection", "") is False  # quietly
    assert not _warnings(caplog)
    with WebhookReceiver() as receiver:
        port = receiver.url.split("/")[2].split(":")[1]
        # Airflow's JSON form; the token is the password, which Airflow masks in its logs.
        monkeypatch.setenv("AIRFLOW_CONN_CARTOLA_WEBHOOK", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": int(port), "schema": "http",
             "password": receiver.path}))
        assert notify.notify(config, "run_failed", "from the connection", "")
        # The URI form, under another connection id.
        monkeypatch.setenv("AIRFLOW_CONN_OPS_HOOK", receiver.url)
        assert notify.notify(config.replace(notify_webhook_conn="ops_hook"), "drift_stop",
                             "from a URI", "")
    assert receiver.events() == ["run_failed", "drift_stop"]
    assert receiver.paths == [receiver.path] * 2
    # The environment variable wins over the connection.
    with WebhookReceiver() as other:
        monkeypatch.setenv(notify.WEBHOOK_ENV, other.url)
        assert notify.notify(config, "run_failed", "env wins", "")
    assert other.events() == ["run_failed"] and len(receiver.messages) == 2


def _smtp_env(monkeypatch, port: int) -> None:
    for key, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                       "SMTP_MAIL_FROM": "cartola@example.com", "SMTP_STARTTLS": "False",
                       "SMTP_SSL": "False", "SMTP_RETRY_LIMIT": "0", "SMTP_TIMEOUT": "5"}.items():
        monkeypatch.setenv(f"AIRFLOW__SMTP__{key}", value)
    # smtp_default without a login: no authentication, and no database lookup.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({"conn_type": "smtp"}))


@pytest.mark.usefixtures("airflow_env")
def test_email_goes_through_airflows_send_email_to_an_smtp_server(config, monkeypatch, caplog):
    config = config.replace(notify_email=("ops@example.com", "ml@example.com"))
    with SmtpReceiver() as smtp:
        _smtp_env(monkeypatch, smtp.port)
        assert notify.notify(config, "data_rejected", "cartola run stopped at the schema gate",
                             "feature 'pro_target': values out of the domain <2>",
                             {"span": "2026-11-16"})
    assert len(smtp.mails) == 1
    sender, recipients, text = smtp.mails[0]
    assert sender == "cartola@example.com"
    assert recipients == ["ops@example.com", "ml@example.com"]
    mail = email.message_from_string(text)
    assert mail["Subject"] == (f"[{config.pipeline_name}] data rejected: cartola run stopped "
                               "at the schema gate")
    (part,) = [p for p in mail.walk() if p.get_content_type() == "text/html"]
    body = part.get_payload(decode=True).decode("utf-8")
    assert "feature 'pro_target': values out of the domain &lt;2&gt;" in body
    assert "<th align='left'>span</th><td>2026-11-16</td>" in body
    assert not _warnings(caplog)


@pytest.mark.usefixtures("airflow_env")
def test_email_to_a_server_that_is_down_costs_one_warning(config, monkeypatch, caplog):
    config = config.replace(notify_email=("ops@example.com",))
    _smtp_env(monkeypatch, int(closed_port_url().split(":")[2].split("/")[0]))
    assert notify.notify(config, "run_failed", "boom", "") is False
    (warning,) = _warnings(caplog)
    assert warning.getMessage() == ("notification run_failed not emailed to ops@example.com: "
                                    "connection refused")


@pytest.mark.usefixtures("airflow_env")
def test_both_channels_one_down_is_false_and_the_other_still_gets_it(config, monkeypatch, caplog):
    config = config.replace(notify_email=("ops@example.com",))
    with SmtpReceiver() as smtp:
        _smtp_env(monkeypatch, smtp.port)
        monkeypatch.setenv(notify.WEBHOOK_ENV, closed_port_url())
        assert notify.notify(config, "version_pushed", "model version 3 pushed", "") is False
    assert len(smtp.mails) == 1 and len(_warnings(caplog)) == 1


def test_data_validation_error_says_which_gate():
    assert DataValidationError("data validation failed with 1 problem").kind == "data_rejected"
    drift = DataValidationError("drift gate stopped the run with 1 problem (...)",
                                kind="drift_stop")
    assert drift.kind == "drift_stop"
    assert pickle.loads(pickle.dumps(drift)).kind == "drift_stop"
    assert str(pickle.loads(pickle.dumps(drift))) == str(drift)


def _failure_context(task_id: str, error: BaseException):
    ti = SimpleNamespace(task_id=task_id, dag_id="cartola_pro", run_id="manual__1",
                         try_number=3, log_url="http://airflow.example:8080/dags/x/runs/y")
    return {"ti": ti, "task_instance": ti, "dag_run": SimpleNamespace(run_id="manual__1"),
            "exception": error}


@pytest.mark.usefixtures("airflow_env")
def test_failure_callback_classifies_by_task(config, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException
    assert airflow_tasks.default_args(config, airflow_tasks.MAX_RETRY_DELAY)[
        "on_failure_callback"] is airflow_tasks.on_task_failure
    gate_error = AirflowFailException("data validation failed with 1 problem (see ...):\n"
                                      "  [train] feature 'pro_target': Out-of-domain values")
    cases = [(topology.VALIDATION_GATE, gate_error, "data_rejected"),
             (topology.DRIFT_GATE, AirflowFailException("drift gate stopped the run"),
              "drift_stop"),
             ("Trainer", RuntimeError("Trainer crashed\nmore"), "run_failed"),
             (airflow_tasks.STATUS_TASK, None, "run_failed")]
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(notify.WEBHOOK_ENV, receiver.url)
        for task_id, error, _ in cases:
            airflow_tasks.on_task_failure(_failure_context(task_id, error))
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
        airflow_tasks.on_task_failure(_failure_context("Trainer", RuntimeError("again")))
        airflow_tasks.on_task_failure({})  # nothing to go on: still no exception
        airflow_tasks.on_task_failure(None)  # type: ignore[arg-type]
    assert receiver.events()[:5] == [event for _, _, event in cases] + ["run_failed"]
    gate = receiver.messages[0]
    assert gate["fields"] == {"DAG": "cartola_pro", "run": "manual__1",
                              "task": topology.VALIDATION_GATE, "try": "3",
                              "error": "data validation failed with 1 problem (see ...):"}
    assert "feature 'pro_target'" in gate["blocks"][0]["text"]["text"]
    assert gate["text"].endswith("DataValidationGate failed, the data was rejected")
    assert receiver.messages[2]["fields"]["error"] == "Trainer crashed"
    assert "log" not in receiver.messages[2]["fields"]  # no [api] base_url: no link
    assert receiver.messages[4]["fields"]["log"].startswith("http://airflow.example:8080/")


@pytest.mark.usefixtures("config", "airflow_env")
def test_status_task_notifies_the_pushed_version(monkeypatch):
    pushed = {"pushed": True, "version": "2", "destination": "/srv/models/2", "reason": "",
              "facts": {"span": "2026-11-16", "KS": "0.4512"}}
    context = {"ti": SimpleNamespace(xcom_pull=lambda task_ids: pushed),
               "dag_run": SimpleNamespace(run_id="manual__2", dag_id="cartola_pro")}
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(notify.WEBHOOK_ENV, receiver.url)
        assert airflow_tasks.report_push(**context) == pushed
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["event"] == "version_pushed"
    assert message["fields"] == {"version": "2", "destination": "/srv/models/2",
                                 "span": "2026-11-16", "KS": "0.4512", "DAG": "cartola_pro",
                                 "run": "manual__2"}


def test_importing_the_notifier_imports_no_airflow_or_tensorflow():
    code = ("import sys, cartola.monitoring.notify, cartola.errors; print(sorted({m.split('.')[0] "
            "for m in sys.modules} & {'airflow', 'tensorflow', 'tfx', 'ml_metadata'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
