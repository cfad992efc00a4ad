"""A small client for TF Serving's REST API: this project's server or real TF Serving.

The contract that works against both: predictions go through the model's ``predict_raw``
signature with raw features by name::

    POST /v1/models/cartola_pro:predict
    {"signature_name": "predict_raw",
     "instances": [{"anos_como_pro": 1, "avg_3": 0.95, ..., "tempo_desperd": NaN}]}

Every instance carries every raw feature; a missing number is sent as ``NaN`` (a token TF
Serving's JSON parser accepts, and Python's ``json`` writes) and a missing string as ``""``.
The answer is ``{"predictions": [[p], ...]}``. Standard library only; one keep-alive
connection per thread, so one client may be shared by threads.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Sequence

from cartola.serving.guards import TOKEN_ENV

RAW_SIGNATURE = "predict_raw"
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class ServingError(RuntimeError):
    """The server answered with an error status (``status``) or could not be reached (0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


def _plain(value: Any, dtype: str) -> Any:
    """A JSON-ready value; None becomes the missing-value marker of its dtype."""
    if value is None:
        return "" if dtype == "DT_STRING" else math.nan
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value) and dtype == "DT_STRING":
        return ""
    return value


class ServingClient:  # pylint: disable=too-many-instance-attributes
    """Status, metadata and ``predict_raw`` predictions of one model."""

    def __init__(self, url: str = "http://127.0.0.1:8501", model_name: str = "cartola_pro",
                 version: Optional[int] = None, timeout: float = 60.0,
                 token: Optional[str] = None):
        """``token``: the bearer token a server beyond loopback wants (default:
        ``$CARTOLA_SERVING_TOKEN``, if set)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host[:port], got {url!r}")
        self._address = (parts.scheme, parts.hostname,
                         parts.port or (443 if parts.scheme == "https" else 80))
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        token = token if token is not None else os.environ.get(TOKEN_ENV, "").strip()
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()
        self._inputs: Optional[Dict[str, str]] = None
        self.last_version: Optional[str] = None  # X-Model-Version of the last answer (ours)

    @property
    def model_path(self) -> str:
        """``/v1/models/<name>[/versions/<n>]``."""
        path = f"/v1/models/{urllib.parse.quote(self.model_name)}"
        return path + (f"/versions/{self.version}" if self.version is not None else "")

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            scheme, host, port = self._address
            factory = (http.client.HTTPSConnection if scheme == "https"
                       else http.client.HTTPConnection)
            conn = factory(host, port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; raises :class:`ServingError` on a non-2xx answer."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = dict(self._auth)
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except OSError as err:
                # A kept-alive connection the server has closed fails once: retry on a new one.
                if attempt == 0 and isinstance(err, _RETRYABLE):
                    continue
                conn.close()
                self._local.conn = None
                raise ServingError(0, f"{method} {path} to {self._address[1]}:"
                                      f"{self._address[2]} failed: {err}") from err
        self.last_version = response.getheader("X-Model-Version")
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            payload = {"error": raw.decode("utf-8", "replace")[:500]}
        if not 200 <= response.status < 300:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ServingError(response.status, message or str(payload)[:500])
        return payload

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def status(self) -> dict:
        """``GET /v1/models/<name>``: ``{"model_version_status": [...]}``."""
        return self.request("GET", self.model_path)

    def metadata(self) -> dict:
        """``GET /v1/models/<name>/metadata``: the model's signatures."""
        return self.request("GET", self.model_path + "/metadata")

    def raw_inputs(self) -> Dict[str, str]:
        """Raw feature name -> dtype (``DT_FLOAT`` or ``DT_STRING``) of ``predict_raw``."""
        if self._inputs is None:
            signatures = self.metadata()["metadata"]["signature_def"]["signature_def"]
            if RAW_SIGNATURE not in signatures:
                raise ServingError(0, f"model {self.model_name} has no {RAW_SIGNATURE!r} "
                                      "signature")
            self._inputs = {name: info["dtype"]
                            for name, info in signatures[RAW_SIGNATURE]["inputs"].items()}
        return self._inputs

    def served_versions(self) -> List[int]:
        """Versions whose state is AVAILABLE."""
        return sorted(int(entry["version"]) for entry in self.status()["model_version_status"]
                      if entry.get("state") == "AVAILABLE")

    def wait_for_version(self, version: Optional[int] = None, timeout: float = 60.0,
                         interval: float = 0.2) -> int:
        """Wait until ``version`` (or any version) is AVAILABLE; returns the newest one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                available = self.served_versions()
                if available and (version is None or version in available):
                    return available[-1]
            except ServingError:
                pass
            if time.monotonic() > deadline:
                raise ServingError(0, f"{self.model_name} version {version or 'any'} not "
                                      f"available after {timeout:.0f} s")
            time.sleep(interval)

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> List[float]:
        """PRO probability of each instance, a mapping of raw features (a feature absent from
        it, None or NaN is sent as missing; keys the model does not know are sent as they
        are, so the server's 400 names them)."""
        dtypes = self.raw_inputs()
        body = {"signature_name": RAW_SIGNATURE,
                "instances": [{name: _plain(row.get(name), dtype) for name, dtype in dtypes.items()}
                              | _extra(row, dtypes) for row in instances]}
        return [p[0] for p in self.request("POST", self.model_path + ":predict", body)[
            "predictions"]]

    def predict_columns(self, columns: Mapping[str, Sequence[Any]]) -> List[float]:
        """Same, columnar: feature -> list of values (TF Serving's ``inputs`` form)."""
        dtypes = self.raw_inputs()
        rows = len(next(iter(columns.values()))) if columns else 0
        inputs = {name: [_plain(v, dtype) for v in columns.get(name, [None] * rows)]
                  for name, dtype in dtypes.items()}
        inputs.update({key: list(values) for key, values in columns.items() if key not in dtypes})
        body = {"signature_name": RAW_SIGNATURE, "inputs": inputs}
        return [p[0] for p in self.request("POST", self.model_path + ":predict", body)[
            "outputs"]]


def _extra(row: Mapping[str, Any], dtypes: Mapping[str, str]) -> Dict[str, Any]:
    """Keys the model does not know, passed through so the server names them in its 400."""
    return {key: value for key, value in row.items() if key not in dtypes}
