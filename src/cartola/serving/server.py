"""A TF Serving-compatible REST server over the integer versions Pusher writes.

Endpoints (TF Serving's REST API, a subset):

* ``GET  /v1/models/<name>[/versions/<n>]``: version status.
* ``GET  /v1/models/<name>[/versions/<n>]/metadata``: signatures, as TF Serving returns them.
* ``POST /v1/models/<name>[/versions/<n>]:predict``: ``{"instances": [...]}`` (row form,
  answered with ``{"predictions": [[p], ...]}``) or ``{"inputs": {...}}`` (columnar form,
  answered with ``{"outputs": [[p], ...]}``).

Instances are objects of raw features by name (the ``predict_raw`` contract: every feature
present, NaN or null for a missing number, '' for a missing string), or ``{"b64": ...}``
serialized ``tf.Example`` protos. Either way the server builds serialized examples and calls
the model's ``serving_default`` signature, the one TFMA evaluated. Requests are validated
against the raw features that signature parses (name, int/float/string, required or not).

The highest version is served, unless ``served.json`` pins one (``cartola rollback``, see
:mod:`cartola.registry.served`). A watcher thread polls the folder; a new served version is
loaded and warmed up completely before one reference assignment swaps it in, so requests
already running finish on the model they started with. Only the modules' light parts load at
import time; TensorFlow is imported when the first model is loaded.

``GET /metrics`` answers Prometheus' text format (:mod:`cartola.serving.metrics`); a sample of
the scored examples goes to :mod:`cartola.monitoring.request_log` (docs/SERVING.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from cartola.registry.served import ServedVersionError, pinned_version
from cartola.serving.metrics import ServingMetrics
from cartola.serving.model import (EXAMPLES_SIGNATURE, RAW_SIGNATURE, RequestError, ServedModel,
                                   build_examples, columns_from_inputs, columns_from_instances,
                                   decode_b64, is_b64)
from cartola.versions import model_versions

LOG = logging.getLogger("cartola.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_INSTANCES = 10_000
VERSION_HEADER = "X-Model-Version"
METRICS_PATH = "/metrics"

# Bodies over the limit are read and dropped up to this multiple of it (so the client sees the
# 400 rather than a reset connection); beyond it the connection is closed unread.
_DRAIN_FACTOR = 8


# --------------------------------------------------------------------------------------------
# Versions: the served model and the watcher.

Loader = Callable[[Path, int], Any]


class ModelRegistry:  # pylint: disable=too-many-instance-attributes
    """The served version of one model folder, swapped when a new one is pushed or pinned.

    ``observer`` (optional, e.g. :class:`ServingMetrics`) hears of each load,
    ``model_load(version, ok)``, and of each version that starts serving,
    ``model_served(version, previous)``: passed in, not global, so registries stay separate.
    """

    def __init__(self, base_dir: Path, name: str,
                 poll_seconds: float = DEFAULT_POLL_SECONDS, loader: Optional[Loader] = None,
                 observer: Any = None):
        self.base_dir = Path(base_dir)
        self.name = name
        self.poll_seconds = poll_seconds
        self.observer = observer
        self._loader = loader or ServedModel.load
        self._current = None
        self._failed: Dict[int, str] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def current(self):
        """The model serving now (None before the first version loads). Read it once per
        request: a swap replaces the reference, never the object a request already holds."""
        return self._current

    def attach(self, observer: Any) -> None:
        """Report to ``observer`` from now on, starting with the version already served."""
        self.observer = observer
        current = self._current
        if current is not None:
            self._notify("model_served", current.version, None)

    def _notify(self, event: str, *args) -> None:
        if self.observer is not None:
            try:
                getattr(self.observer, event)(*args)
            except Exception:  # pylint: disable=broad-except
                LOG.exception("model registry: observer failed on %s", event)

    def refresh(self) -> bool:
        """Serve the served version (the pinned one, else the highest loadable); True if the
        served version changed.

        A version that fails to load is logged, reported in the status and not retried; the
        previous one keeps serving. With no pin, the next highest version is tried; a pinned
        version (a rollback) that cannot load, or an unreadable pin file, keeps the current
        model serving.
        """
        with self._refresh_lock:
            current = self._current
            while True:
                try:
                    pinned = pinned_version(self.base_dir)
                except ServedVersionError as err:
                    LOG.error("%s; still serving %s", err,
                              f"version {current.version}" if current else "nothing")
                    return False
                candidates = [v for v in model_versions(self.base_dir) if v not in self._failed]
                if pinned is not None:
                    candidates = [pinned] if pinned in candidates else []
                if not candidates or (current is not None and current.version == candidates[-1]):
                    return False
                target = candidates[-1]
                started = time.monotonic()
                try:
                    model = self._loader(self.base_dir / str(target), target)
                except Exception as err:  # pylint: disable=broad-except
                    self._failed[target] = f"{type(err).__name__}: {err}"
                    LOG.error("cannot load %s version %d: %s", self.name, target,
                              self._failed[target])
                    self._notify("model_load", target, False)
                    continue  # the next highest one, unless it is already served
                self._current = model
                self._notify("model_load", target, True)
                self._notify("model_served", target, current.version if current else None)
                LOG.info("serving %s version %d (loaded in %.1f s)%s", self.name, target,
                         time.monotonic() - started,
                         f", replacing version {current.version}" if current else "")
                return True

    def start(self) -> "ModelRegistry":
        """Poll the folder every ``poll_seconds`` in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="model-watcher",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.poll_seconds, 1.0) + 60)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # pylint: disable=broad-except
                LOG.exception("model watcher: refresh failed")  # keep watching

    def status(self, version: Optional[int] = None) -> dict:
        """TF Serving's GetModelStatusResponse as JSON."""
        entries = []
        current = self._current
        if current is not None and version in (None, current.version):
            entries.append({"version": str(current.version), "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""}})
        for failed, message in sorted(dict(self._failed).items(), reverse=True):
            if version in (None, failed):
                entries.append({"version": str(failed), "state": "END",
                                "status": {"error_code": "UNKNOWN", "error_message": message}})
        if not entries:
            detail = f"version {version} of model {self.name}" if version is not None else (
                f"any versions of model {self.name}")
            raise RequestError(f"Could not find {detail}", status=404)
        return {"model_version_status": entries}


# --------------------------------------------------------------------------------------------
# HTTP.

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                   r"(?:/(?P<metadata>metadata))?(?::(?P<verb>[A-Za-z]+))?/?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "cartola-serving/1"
    timeout = 120  # seconds a connection may sit idle or stall mid-request
    server: "ModelServer"

    def do_GET(self):  # pylint: disable=invalid-name
        """Status, metadata and metrics."""
        self._dispatch("GET")

    def do_POST(self):  # pylint: disable=invalid-name
        """Predict."""
        self._dispatch("POST")

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        LOG.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        headers: Dict[str, str] = {}
        status, rows = 500, 0
        try:
            try:
                status, body, headers = 200, *self._route(method)
            except RequestError as err:
                status, body = err.status, {"error": str(err)}
                if status >= 500:
                    LOG.error("%s %s: %s", method, self.path, err)
            except Exception as err:  # pylint: disable=broad-except
                LOG.exception("%s %s failed", method, self.path)
                status, body = 500, {"error": f"internal error: {type(err).__name__}: {err}"}
            if isinstance(body, bytes):  # /metrics: the content type comes with it
                data, content_type = body, headers.pop("Content-Type")
            else:
                data, content_type = json.dumps(body).encode("utf-8"), "application/json"
                rows = len(body.get("predictions") or body.get("outputs") or ())
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        finally:  # a client that hung up is still counted, with the status it was sent
            self.server.metrics.record(endpoint_of(self.path), method, status,
                                       time.perf_counter() - started, rows)

    def _route(self, method: str) -> Tuple[Any, Dict[str, str]]:
        path = self.path.split("?", 1)[0]
        if path == METRICS_PATH:
            if method != "GET":
                self._discard_body()
                raise RequestError(f"use GET for {METRICS_PATH}", status=405)
            body, content_type = self.server.metrics.exposition()
            return body, {"Content-Type": content_type}
        match = _PATH.match(path)
        if match is None:
            if method == "POST":
                self._discard_body()
            raise RequestError(f"no such endpoint: {method} {self.path}; see "
                               f"/v1/models/{self.server.registry.name}", status=404)
        registry = self.server.registry
        version = int(match["version"]) if match["version"] else None
        verb = match["verb"]
        if match["name"] != registry.name:
            if method == "POST":
                self._discard_body()
            spec = f"Specific({match['name']}, {version})" if version else (
                f"Latest({match['name']})")
            raise RequestError(f"Servable not found for request: {spec}", status=404)
        if method == "GET":
            if verb:
                raise RequestError(f"use POST for :{verb}", status=405)
            if match["metadata"]:
                return self._metadata(self._model(version)), {}
            return registry.status(version), {}
        payload = self._read_json()
        if match["metadata"] or verb != "predict":
            raise RequestError(f"unsupported request POST {self.path}; this server answers "
                               ":predict (not :classify or :regress)", status=404 if not verb
                               else 400)
        model = self._model(version)
        return predict(model, payload, self.server.max_instances, self.server.request_log), {
            VERSION_HEADER: str(model.version)}

    def _model(self, version: Optional[int]):
        model = self.server.registry.current  # read once: this request keeps this model
        name = self.server.registry.name
        if model is None:
            raise RequestError(f"no version of model {name} is loaded yet (watching "
                               f"{self.server.registry.base_dir})", status=503)
        if version is not None and version != model.version:
            raise RequestError(f"Servable not found for request: Specific({name}, {version}); "
                               f"serving version {model.version}", status=404)
        return model

    def _metadata(self, model) -> dict:
        return {"model_spec": {"name": self.server.registry.name, "signature_name": "",
                               "version": str(model.version)},
                "metadata": {"signature_def": {"signature_def": model.signature_defs}}}

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= _DRAIN_FACTOR * self.server.max_body_bytes:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        else:
            self.close_connection = True

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError("chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError) as err:
            self.close_connection = True
            raise RequestError("a Content-Length header is required") from err
        limit = self.server.max_body_bytes
        if length > limit:
            self._discard_body()
            raise RequestError(f"request body of {length} bytes is over the limit of {limit} "
                               "bytes (--max-body-bytes); split the request")
        body = self.rfile.read(length)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(f"JSON Parse error: {err}") from err


def endpoint_of(path: str) -> str:
    """The metrics' endpoint label of a request path: one of a fixed few, never the path."""
    path = path.split("?", 1)[0]
    if path == METRICS_PATH:
        return "metrics"
    match = _PATH.match(path)
    if match is None:
        return "other"
    if match["verb"]:
        return "predict" if match["verb"] == "predict" else "other"
    return "metadata" if match["metadata"] else "status"


def predict(model, payload: Any, max_instances: int = DEFAULT_MAX_INSTANCES,
            request_log: Any = None) -> dict:
    """Answer one predict request body (already parsed JSON) with ``model``; log the scored
    rows to ``request_log`` (a :class:`cartola.monitoring.request_log.RequestLogger`) if any."""
    if not isinstance(payload, dict):
        raise RequestError("the request body must be a JSON object")
    signature = payload.get("signature_name") or EXAMPLES_SIGNATURE
    if signature not in (EXAMPLES_SIGNATURE, RAW_SIGNATURE):
        raise RequestError(f"signature_name {signature!r} not found; this model serves "
                           f"{RAW_SIGNATURE!r} (raw features by name) and {EXAMPLES_SIGNATURE!r}"
                           " (raw features by name, or b64 serialized tf.Example)")
    if ("instances" in payload) == ("inputs" in payload):
        raise RequestError("the request needs exactly one of 'instances' (rows) or 'inputs' "
                           "(columns)")
    rows_form = "instances" in payload
    data = payload["instances"] if rows_form else payload["inputs"]
    if rows_form and (not isinstance(data, list) or not data):
        raise RequestError("'instances' must be a non-empty list")
    examples = _serialized_examples(data, rows_form)
    if examples is not None and signature != EXAMPLES_SIGNATURE:
        raise RequestError(f"b64 examples go to {EXAMPLES_SIGNATURE!r}; {RAW_SIGNATURE!r} takes "
                           "raw features by name")
    if examples is not None:
        count = len(examples)
    elif rows_form:
        count = len(data)
    else:
        count = max((len(v) for v in data.values() if isinstance(v, list)),
                    default=0) if isinstance(data, dict) else 0
    if count > max_instances:
        raise RequestError(f"{count} instances is over the limit of {max_instances} per request "
                           "(--max-instances); split the request")
    columns = None
    if examples is None:
        columns = (columns_from_instances(data, model.features) if rows_form
                   else columns_from_inputs(data, model.features))
    probabilities = _score(model, examples, columns, request_log)
    # float(float32) is exact, so clients reading the JSON get the model's float32 back.
    result = [[float(p)] for p in probabilities]
    return {"predictions": result} if rows_form else {"outputs": result}


def _score(model, examples: Optional[List[bytes]], columns, request_log: Any):
    """Probabilities of serialized examples, else of checked columns. With a request log the
    columns are encoded here, not inside the model, so the very bytes scored are logged
    without encoding them twice (the log only queues them)."""
    if examples is None:
        if request_log is None:
            return model.predict_columns(columns)
        examples = build_examples(columns, model.features)
    probabilities = model.predict_serialized(examples)
    if request_log is not None:
        request_log.log(examples, probabilities, model.version)
    return probabilities


def _serialized_examples(data: Any, rows_form: bool) -> Optional[List[bytes]]:
    """Serialized examples if the request carries b64 ``tf.Example`` protos, else None."""
    if rows_form:
        values = [v.get("examples") if isinstance(v, dict) and len(v) == 1 and "examples" in v
                  else v for v in data]
    elif isinstance(data, dict) and set(data) == {"examples"}:
        values = data["examples"]
    else:
        values = data
    if not isinstance(values, list) or not values or not any(is_b64(v) for v in values):
        return None
    if not all(is_b64(v) for v in values):
        raise RequestError("mixed instances: either every instance is {\"b64\": ...} or none is")
    return decode_b64(values)


class ModelServer(ThreadingHTTPServer):
    """HTTP server answering TF Serving's REST API from a :class:`ModelRegistry`."""

    daemon_threads = True

    def __init__(self, registry: ModelRegistry,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_instances: int = DEFAULT_MAX_INSTANCES,
                 metrics: Optional[ServingMetrics] = None, request_log: Any = None):
        """A registry without an observer reports to ``metrics`` (default: new ones);
        ``request_log`` (optional) is closed with the server."""
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self.max_instances = max_instances
        self.metrics = metrics if metrics is not None else ServingMetrics()
        if registry.observer is None:
            registry.attach(self.metrics)
        self.request_log = request_log
        super().__init__((host, port), _Handler)

    def server_close(self) -> None:
        """Close the socket, then the request log (its open file is renamed complete)."""
        super().server_close()
        if self.request_log is not None:
            self.request_log.close()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8501``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, benchmarks); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="model-server", daemon=True)
        thread.start()
        return thread


# --------------------------------------------------------------------------------------------
# Command line (also ``cartola serve``).

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cartola serve``; model folder and name default to the config."""
    parser.add_argument("--model-dir", help="folder of integer versions (default: "
                        "<serving_dir>/<model_name> from the config)")
    parser.add_argument("--model-name", help="name in the URL (default: config model_name)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}, TF Serving's; 0 = any free port)")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                        help="how often to look for a new version (default %(default)s)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted (default %(default)s)")
    parser.add_argument("--max-instances", type=int, default=DEFAULT_MAX_INSTANCES,
                        help="most rows per predict request (default %(default)s)")
    parser.add_argument("--request-log-dir",
                        help="request logs go to DIR/<model name> (default: config "
                             "request_log_dir, <project_home>/request_logs)")
    parser.add_argument("--request-log-sample", type=_share, metavar="SHARE",
                        help="share of scored rows logged, 0 to 1 (default: config "
                             "request_log_sample; 0 = no log)")
    parser.add_argument("--no-request-log", action="store_true",
                        help="log no requests (same as --request-log-sample 0)")


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of rows in [0, 1], got {text}")
    return value


def serve(args: argparse.Namespace, model_dir: Path, model_name: str, config=None) -> int:
    """Run the server until SIGINT/SIGTERM. ``config`` (default: loaded from ``args.config``)
    supplies the request log settings the options leave out."""
    # pylint: disable=import-outside-toplevel
    from cartola.config import load_config
    from cartola.monitoring.request_log import RequestLogger
    config = config or load_config(getattr(args, "config", None))
    metrics = ServingMetrics()
    registry = ModelRegistry(model_dir, model_name, args.poll_seconds, observer=metrics)
    registry.refresh()
    if registry.current is None:
        LOG.warning("no loadable version under %s yet; waiting for one", model_dir)
    registry.start()
    server = ModelServer(registry, args.host, args.port, args.max_body_bytes, args.max_instances,
                         metrics)
    server.request_log = None if getattr(args, "no_request_log", False) else (
        RequestLogger.from_config(config, model_name, getattr(args, "request_log_sample", None),
                                  getattr(args, "request_log_dir", None), metrics))
    if server.request_log is not None:
        print(f"logging {server.request_log.sample:.0%} of scored rows to "
              f"{server.request_log.folder}", flush=True)
    # SIGTERM (docker stop, systemd) stops like Ctrl-C; shutdown() must not run on this thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving model {model_name} from {model_dir}; listening on {server.url} "
          f"(try {server.url}/v1/models/{model_name})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
        server.server_close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m cartola.serving.server``: same options as ``cartola serve``."""
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog="python -m cartola.serving.server",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(args.config)
    return serve(args, Path(args.model_dir) if args.model_dir else config.model_serving_dir,
                 args.model_name or config.model_name, config)


if __name__ == "__main__":
    sys.exit(main())
