"""Notifications that reach a person: a Slack-compatible webhook and Airflow's email.

:func:`notify` sends one event (``config.NOTIFY_EVENTS``) when ``config.notify_on`` lists it:

- to a webhook: the URL in ``$CARTOLA_WEBHOOK_URL``, else, inside an Airflow task, the Airflow
  connection ``config.notify_webhook_conn`` (none: no webhook). The body is Slack's
  ``{"text", "blocks"}`` plus ``event``, ``pipeline`` and ``fields`` for other receivers;
- by email to ``config.notify_email`` through Airflow's ``send_email`` (its ``[email]``
  backend, ``[smtp]`` settings and ``smtp_default`` credentials), when Airflow is installed.

A notification must never fail or hide the run it reports on, so :func:`notify` never raises:
a channel that fails (refused, timed out, HTTP error, bad URL, no Airflow) costs one warning
line on the ``cartola.notify`` logger, and :func:`notify` returns False. The webhook URL holds
a token, so messages name its host only.

Light to import (standard library only): the CLI, the Airflow DAG file and the task callables
import it; Airflow is imported only to read a connection or to send an email.
"""
from __future__ import annotations

import contextlib
import html
import importlib.util
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Mapping, Optional

WEBHOOK_ENV = "CARTOLA_WEBHOOK_URL"
LOGGER_NAME = "cartola.notify"
# How each event reads in a one-line summary.
EVENT_LABELS = {
    "data_rejected": "data rejected",
    "drift_stop": "stopped by drift",
    "run_failed": "run failed",
    "version_pushed": "new model version",
    "monitor_alert": "monitor alert",
}
# Slack's limits: 3000 characters of section text, 2000 per field, 10 fields per section.
_TEXT_LIMIT = 2900
_FIELD_LIMIT = 1900
_MAX_FIELDS = 10

log = logging.getLogger(LOGGER_NAME)


class NotifyError(Exception):
    """A channel did not deliver; the message is safe to log (no URL path, no token)."""


def notify(config, event: str, title: str, text: str,
           fields: Optional[Mapping[str, Any]] = None) -> bool:
    """Send ``event`` to every configured channel.

    True when at least one channel delivered and none failed; False when the event is not in
    ``config.notify_on``, no channel is configured, or a channel failed (one warning line
    each). Never raises.
    """
    try:
        return _notify(config, event, title, text, fields or {})
    except Exception as err:  # pylint: disable=broad-except
        # A bug here must not fail the run either; the type alone cannot leak a secret.
        _warn(f"notification {event} not sent: {type(err).__name__}")
        return False


def wanted(config, event: str) -> bool:
    """Whether :func:`notify` would try to send ``event``: a cheap check before gathering
    costly facts for the message."""
    return event in config.notify_on and bool(
        os.environ.get(WEBHOOK_ENV, "").strip() or config.notify_email or _in_airflow())


def _notify(config, event: str, title: str, text: str, fields: Mapping[str, Any]) -> bool:
    if event not in config.notify_on:
        log.debug("notification %s not sent: not in notify_on", event)
        return False
    values = {str(key): str(value) for key, value in fields.items()
              if value is not None and str(value) != ""}
    summary = f"[{config.pipeline_name}] {EVENT_LABELS.get(event, event)}: {title}"
    sent = failed = 0
    url = None
    try:
        url = webhook_url(config)
    except NotifyError as err:
        _warn(f"notification {event} not sent to the webhook: {err}")
        failed += 1
    if url:
        try:
            post_webhook(url, slack_message(config, event, summary, title, text, values),
                         config.notify_timeout_seconds)
            sent += 1
            log.info("notification %s sent to webhook %s", event, url_host(url))
        except NotifyError as err:
            _warn(f"notification {event} not sent to webhook {url_host(url)}: {err}")
            failed += 1
    if config.notify_email:
        try:
            send_email(config.notify_email, summary, email_html(title, text, values))
            sent += 1
            log.info("notification %s emailed to %s", event, ", ".join(config.notify_email))
        except NotifyError as err:
            _warn(f"notification {event} not emailed to {', '.join(config.notify_email)}: {err}")
            failed += 1
    if not sent and not failed:
        log.debug("notification %s not sent: no webhook URL and no notify_email", event)
    return sent > 0 and failed == 0


def _warn(line: str) -> None:
    log.warning("%s", line)


# --- webhook --------------------------------------------------------------------------------

def url_host(url: str) -> str:
    """``host[:port]`` of a URL: what may be logged (the path and query hold the token)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or "(no host)"
        return f"{host}:{parsed.port}" if parsed.port else host
    except ValueError:
        return "(invalid URL)"


def webhook_url(config) -> Optional[str]:
    """The webhook URL: ``$CARTOLA_WEBHOOK_URL``, else the Airflow connection inside a task;
    None when neither is set (a missing connection is not an error)."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        return url
    if not _in_airflow():
        return None
    # pylint: disable=import-outside-toplevel
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    try:
        connection = BaseHook.get_connection(config.notify_webhook_conn)
    except AirflowNotFoundException:
        return None
    except Exception as err:  # pylint: disable=broad-except
        raise NotifyError(f"cannot read Airflow connection {config.notify_webhook_conn!r}: "
                          f"{type(err).__name__}") from None
    return connection_url(connection)


def _in_airflow() -> bool:
    """Whether this process runs an Airflow task (as Airflow itself tells: the task runner's
    channel to its supervisor exists), so connections can be read."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def connection_url(connection) -> Optional[str]:
    """The webhook URL an Airflow connection describes, in any of the usual forms:

    - extra ``{"url": "https://..."}`` (or ``webhook_url``);
    - host ``https://hooks.slack.com/services`` with the token as password (Slack's provider
      does so; Airflow masks the password in its logs);
    - host ``hooks.example.com``, schema ``https`` (the scheme), port, extra ``endpoint``,
      password as the last path part;
    - a connection URI ``https://host/path``: Airflow keeps its scheme as the type and its
      path as the schema.
    """
    extra = {}
    with contextlib.suppress(Exception):
        extra = dict(connection.extra_dejson or {})
    if extra.get("url") or extra.get("webhook_url"):
        return str(extra.get("url") or extra.get("webhook_url"))
    host = (connection.host or "").strip()
    if not host:
        return None
    schema = (connection.schema or "").strip()
    scheme = next((value for value in (schema, connection.conn_type or "")
                   if value.lower() in ("http", "https")), "https")
    path_parts = [] if schema.lower() in ("http", "https") else [schema]
    if "://" not in host:
        host = f"{scheme.lower()}://{host}"
    parsed = urllib.parse.urlsplit(host)
    netloc = parsed.netloc
    if connection.port and parsed.port is None:
        netloc = f"{netloc}:{connection.port}"
    path_parts = [parsed.path] + path_parts + [extra.get("endpoint") or "",
                                               connection.password or ""]
    path = "/".join(part.strip("/") for part in path_parts if part and part.strip("/"))
    return urllib.parse.urlunsplit((parsed.scheme, netloc, "/" + path if path else "",
                                    parsed.query, ""))


def _mrkdwn(value: str, limit: int) -> str:
    """Slack mrkdwn escapes ``&``, ``<`` and ``>``; long text is cut, saying so."""
    if len(value) > limit:
        value = value[:limit - 15] + "\n... (cut)"
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(config, event: str, summary: str, title: str, text: str,
                  fields: Mapping[str, str]) -> Dict[str, Any]:
    """Slack's incoming-webhook JSON; ``event``, ``pipeline`` and ``fields`` are for other
    receivers (Slack ignores unknown keys)."""
    body = f"*{_mrkdwn(title, 300)}*"
    if text.strip():
        body += "\n```" + _mrkdwn(text.strip(), _TEXT_LIMIT - len(body) - 10) + "```"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]
    if fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _mrkdwn(f"*{key}*\n{value}", _FIELD_LIMIT)}
            for key, value in list(fields.items())[:_MAX_FIELDS]]})
    return {"text": summary, "blocks": blocks, "event": event,
            "pipeline": config.pipeline_name, "fields": dict(fields)}


def post_webhook(url: str, message: Mapping[str, Any], timeout: float) -> None:
    """POST ``message`` as JSON; raise :class:`NotifyError` unless it answers 2xx in time."""
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError:
        raise NotifyError("the URL cannot be parsed") from None
    if scheme not in ("http", "https"):
        raise NotifyError(f"not an http(s) URL (scheme {scheme or 'missing'!r})")
    request = urllib.request.Request(
        url, data=json.dumps(message).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8",
                 "User-Agent": "cartola-notify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            response.read(65536)
    except urllib.error.HTTPError as err:
        raise NotifyError(_scrub(f"HTTP {err.code} {err.reason}", url)) from None
    except urllib.error.URLError as err:
        raise NotifyError(_scrub(_reason(err.reason, timeout), url)) from None
    except Exception as err:  # pylint: disable=broad-except
        # Timeouts while reading, resets, http.client's InvalidURL (which quotes the path).
        raise NotifyError(_scrub(_reason(err, timeout), url)) from None


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL or its secret parts (path, query, user info)."""
    with contextlib.suppress(ValueError):
        parsed = urllib.parse.urlsplit(url)
        secrets = [url, parsed.path, parsed.query, parsed.password or "", parsed.username or ""]
        secrets += [part for part in parsed.path.split("/") if len(part) >= 6]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
    return text


def _reason(error: Any, timeout: Optional[float] = None) -> str:
    """Why a request failed, in one line."""
    if isinstance(error, TimeoutError) or "timed out" in str(error):
        return (f"no answer within {timeout:g} s (notify_timeout_seconds)"
                if timeout else "timed out")
    if isinstance(error, ConnectionRefusedError) or "Connection refused" in str(error):
        return "connection refused"
    if isinstance(error, BaseException):
        text = str(error).strip()
        return f"{type(error).__name__}: {text}".splitlines()[0] if text else type(error).__name__
    return (str(error).strip().splitlines() or ["unknown error"])[0]


# --- email ----------------------------------------------------------------------------------

def email_html(title: str, text: str, fields: Mapping[str, str]) -> str:
    """The email body: the title, the text as preformatted lines, the fields as a table."""
    def esc(value: str) -> str:
        return html.escape(value, quote=False)  # element text only: quotes stay readable
    rows = "".join(f"<tr><th align='left'>{esc(key)}</th><td>{esc(value)}</td></tr>"
                   for key, value in fields.items())
    return (f"<p><b>{esc(title)}</b></p>"
            + (f"<pre>{esc(text.strip())}</pre>" if text.strip() else "")
            + (f"<table>{rows}</table>" if rows else ""))


def send_email(to, subject: str, html_content: str) -> None:
    """Airflow's ``airflow.utils.email.send_email``: its ``[email] email_backend`` (SMTP by
    default) with the ``[smtp]`` settings and the ``smtp_default`` connection's login."""
    if importlib.util.find_spec("airflow") is None:
        raise NotifyError("Airflow is not installed (email goes through Airflow's send_email)")
    try:
        from airflow.utils.email import send_email as airflow_send_email  # pylint: disable=import-outside-toplevel
        airflow_send_email(list(to), subject, html_content)
    except Exception as err:  # pylint: disable=broad-except
        raise NotifyError(_reason(err)) from None


# --- for the callers ------------------------------------------------------------------------

class _CurrentStderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (test harnesses replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pylint: disable=broad-except
            self.handleError(record)


@contextlib.contextmanager
def warnings_to_stderr(prefix: str = "cartola: warning: ") -> Iterator[None]:
    """For command lines: the notifier's warnings go to stderr as one ``cartola: warning:``
    line each, and not also to the root logger (TFX's absl handler would print them again)."""
    handler = _CurrentStderr(logging.WARNING)
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def run_facts(config, run_id: Optional[str] = None) -> Dict[str, str]:
    """Span, rows and KS/AUC (challenger and champion) of a pipeline run (default: the latest)
    from ML Metadata, for a ``version_pushed`` message; empty when unavailable.

    Call it where TFX is loaded already (after ``cartola run``, in the Pusher's task): it
    reads the Evaluator's output with TFMA.
    """
    try:
        # pylint: disable=import-outside-toplevel
        from cartola.registry.history import run_row
        from cartola.registry.runs import load_run
        row = run_row(config, load_run(config, run_id))
    except Exception as err:  # pylint: disable=broad-except
        log.debug("no run facts for the notification: %s", err)
        return {}
    facts = {"span": row.span, "rows": f"{row.rows:,}" if row.rows is not None else ""}
    for name, value in (("KS", row.ks), ("AUC", row.auc), ("champion KS", row.champion_ks),
                        ("champion AUC", row.champion_auc)):
        if value is not None:
            facts[name] = f"{value:.4f}"
    return {key: value for key, value in facts.items() if value}
