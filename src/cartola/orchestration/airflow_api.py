"""Client of Airflow 3's REST API (``/api/v2``, JWT bearer tokens from ``/auth/token``)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional


class AirflowApiError(RuntimeError):
    """The REST API refused a call or could not be reached."""


def quote(value: str) -> str:
    """A run id or other value as one URL path segment."""
    return urllib.parse.quote(value, safe="")


class AirflowApi:
    """Calls ``/api/v2`` as one user; the JWT is fetched once and renewed on a 401."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: Optional[str] = None
        self.timeout = timeout

    def _send(self, method: str, url: str, payload: Optional[dict],
              headers: Dict[str, str]) -> Any:
        request = urllib.request.Request(
            url, method=method, data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **headers})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read() or b"{}")

    def token(self, refresh: bool = False) -> str:
        """A JWT for the user (the auth manager's ``/auth/token`` endpoint)."""
        if self._token is None or refresh:
            try:
                answer = self._send("POST", self.url + "/auth/token", self._credentials, {})
            except urllib.error.HTTPError as err:
                raise AirflowApiError(f"login as {self._credentials['username']!r} failed: "
                                      f"HTTP {err.code}") from None
            except (urllib.error.URLError, OSError) as err:
                raise AirflowApiError(f"{self.url} not reachable: {err}") from None
            self._token = answer["access_token"]
        return self._token

    def call(self, method: str, path: str, payload: Optional[dict] = None) -> Any:
        """``method`` ``/api/v2`` + ``path``; the decoded JSON answer."""
        for attempt in (1, 2):
            try:
                return self._send(method, f"{self.url}/api/v2{path}", payload,
                                  {"Authorization": f"Bearer {self.token(refresh=attempt > 1)}"})
            except urllib.error.HTTPError as err:
                if err.code == 401 and attempt == 1:
                    continue  # expired token: log in again once
                raise AirflowApiError(f"{method} {path}: HTTP {err.code} "
                                      f"{err.read().decode(errors='replace')[:500]}") from None
            except (urllib.error.URLError, OSError) as err:
                raise AirflowApiError(f"{method} {path}: {err}") from None
        raise AssertionError("unreachable")

    # --- DAG runs ---------------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: Optional[dict] = None) -> str:
        """Create a manual DAG run (like the UI's trigger button); returns its run_id."""
        answer = self.call("POST", f"/dags/{dag_id}/dagRuns",
                           {"logical_date": None, "conf": conf or {}})
        return answer["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        """The DAG run (state, conf, dates, note)."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id)}")

    def dag_runs(self, dag_id: str) -> list:
        """All runs of a DAG."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 2.0) -> str:
        """Wait until the run finishes; returns its final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise AirflowApiError(f"run {run_id} not finished after {timeout:.0f} s")

    def task_instances(self, dag_id: str, run_id: str) -> Dict[str, dict]:
        """Task id -> task instance (state, try_number, hostname, pid, dates, duration)."""
        answer = self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti for ti in answer["task_instances"]}

    def wait_dag(self, dag_id: str, timeout: float) -> dict:
        """Wait until the DAG processor has registered ``dag_id``; returns the DAG."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call("GET", f"/dags/{dag_id}")
            except AirflowApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
