"""The model server's HTTP layer: TF Serving's REST API (a subset) as a FastAPI app.

Endpoints:

* ``GET  /v1/models/<name>[/versions/<n>]``: version status.
* ``GET  /v1/models/<name>[/versions/<n>]/metadata``: signatures, as TF Serving returns them.
* ``POST /v1/models/<name>[/versions/<n>]:predict``: ``{"instances": [...]}`` (row form,
  answered with ``{"predictions": [[p], ...]}``) or ``{"inputs": {...}}`` (columnar form,
  answered with ``{"outputs": [[p], ...]}``); the ``X-Model-Version`` header names the
  version that answered.
* ``GET  /metrics``: Prometheus' text format (:mod:`cartola.serving.metrics`).
* ``GET  /health``: 200 once a version is loaded, else 503; no model name or version, and
  open even when a token is required (:mod:`cartola.serving.guards`).
* ``GET  /openapi.json``, ``/docs``: the API described by FastAPI.

Versions come from a :class:`~cartola.serving.core.ModelRegistry` (hot swap) and answers
from :func:`~cartola.serving.core.predict`, which also hands the scored examples to the
request log (:mod:`cartola.serving.request_log`). Every request, errors included, is
counted in :class:`~cartola.serving.metrics.ServingMetrics` by one ASGI middleware, in
front of the bearer-token check and the load shedding of :mod:`cartola.serving.guards`.

Bodies stay raw bytes parsed by ``json`` rather than pydantic models: TF Serving's error texts
and status codes are the contract (FastAPI's 422 bodies are not), and pydantic validation of
1000-row requests would only repeat the checks :func:`predict` makes anyway. The pydantic
models below document the shapes in OpenAPI and validate nothing. Predict runs in Starlette's
thread pool, as a plain ``def`` endpoint would: on the event loop, TensorFlow would stop every
other connection while it computes (docs/SERVING.md, "Why FastAPI").
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from cartola.serving.core import (DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES,
                                  HEALTH_PATH, METRICS_PATH, MODEL_PATH, VERSION_HEADER,
                                  ModelRegistry, endpoint_of, predict)
from cartola.serving.guards import BearerAuth, ShedLoad
from cartola.serving.metrics import ServingMetrics
from cartola.serving.model import RequestError

LOG = logging.getLogger("cartola.serving")

# Bodies over the limit up to this multiple of it are drained (uvicorn does that for a body
# the app never reads), so the client reads the 400 rather than a reset connection; beyond
# it, the connection is closed.
_DRAIN_FACTOR = 8
_IDLE_SECONDS = 120  # keep-alive: uvicorn's default of 5 s would make clients reconnect often
_GRACE_SECONDS = 10  # on SIGTERM, running requests get this long to finish


class _ModelName(Convertor):
    """A model name as TF Serving's paths have it: no '/' and no ':' (the verb separator), so
    ``/v1/models/{name}`` does not swallow ``name:predict``."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tfs_name", _ModelName())


# --------------------------------------------------------------------------------------------
# OpenAPI shapes (documentation only: requests are checked by predict()).

class PredictRequest(BaseModel):
    """TF Serving's predict request: exactly one of ``instances`` and ``inputs``."""

    signature_name: Optional[str] = Field(
        None, description="'serving_default' (default; raw features or b64 tf.Examples) or "
                          "'predict_raw' (raw features)")
    instances: Optional[List[Any]] = Field(
        None, description="rows: {feature: value} objects or {\"b64\": serialized tf.Example}")
    inputs: Optional[Union[Dict[str, List[Any]], List[Any]]] = Field(
        None, description="columns: {feature: [values]}")


class PredictResponse(BaseModel):
    """``predictions`` answers ``instances``; ``outputs`` answers ``inputs``. Each score is
    the probability that column ``label`` holds ``positive_label``."""

    predictions: Optional[List[List[float]]] = None
    outputs: Optional[List[List[float]]] = None
    label: Optional[str] = None
    positive_label: Optional[str] = None


class ErrorResponse(BaseModel):
    """Every error, as TF Serving writes it."""

    error: str


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 405, 413, 415, 503)}
_PREDICT_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema(),
    "example": {"signature_name": "predict_raw", "instances": [{"anos_como_pro": 1}]}}}}}


# --------------------------------------------------------------------------------------------
# Metrics of every request.

class _RecordMetrics:  # pylint: disable=too-few-public-methods
    """ASGI middleware: one ``ServingMetrics.record`` per HTTP request, whatever answered it.

    Recorded as the last body chunk goes out (not after it), so a client that reads a response
    and then scrapes ``/metrics`` always finds that response counted. An answer that never
    started (the app failed) counts as 500. Routes report the rows they scored in
    ``request.state.rows``.
    """

    def __init__(self, app, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # request.state: the route writes "rows" here
        answer = {"status": 500, "recorded": False}

        def record():
            answer["recorded"] = True
            method = scope["method"] if scope["method"] in ("GET", "POST") else "OTHER"
            self.metrics.record(endpoint_of(scope["path"]), method, answer["status"],
                                time.perf_counter() - started, state.get("rows", 0))

        async def send_recorded(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:  # a client that hung up is still counted, with the status it was sent
            if not answer["recorded"]:
                record()


# --------------------------------------------------------------------------------------------
# Requests.

@dataclass(frozen=True)
class _Serving:
    registry: ModelRegistry
    max_body_bytes: int
    max_instances: int
    metrics: ServingMetrics
    request_log: Any  # a cartola.serving.request_log.RequestLogger, or None


class _BodyError(RequestError):
    """A refused body; ``close`` when the rest of it is not worth reading."""

    def __init__(self, message: str, close: bool, status: int = 400):
        super().__init__(message, status)
        self.close = close


def _json(body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
    # json.dumps, NaN allowed (TF Serving's parser reads it); Starlette's JSONResponse refuses it.
    return Response(json.dumps(body).encode("utf-8"), status, headers,
                    media_type="application/json")


def _error(err: Exception, method: str, path: str) -> Response:
    if isinstance(err, RequestError):
        if err.status >= 500:
            LOG.error("%s %s: %s", method, path, err)
        close = {"Connection": "close"} if getattr(err, "close", False) else None
        return _json({"error": str(err)}, err.status, close)
    LOG.error("%s %s failed", method, path, exc_info=err)
    return _json({"error": f"internal error: {type(err).__name__}: {err}"}, 500)


def _target(request: Request) -> str:
    """Path and query, as the request line had them, for messages."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _body_length(request: Request) -> int:
    """Content-Length (0 when absent), or -1 when chunked or unreadable (size unknown)."""
    if request.headers.get("transfer-encoding"):
        return -1
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        return -1


def _drop_body(request: Request, serving: _Serving) -> Dict[str, str]:
    """Headers for an answer that leaves the body unread: uvicorn drains a body up to
    ``_DRAIN_FACTOR`` times the limit; a bigger or unknown one closes the connection."""
    length = _body_length(request)
    return {} if 0 <= length <= _DRAIN_FACTOR * serving.max_body_bytes else {
        "Connection": "close"}


def _json_type(content_type: str) -> bool:
    """application/json, any ``+json`` type, or none given (TF Serving's own clients)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def _read_body(request: Request, serving: _Serving) -> bytes:
    content_type = request.headers.get("content-type", "")
    if not _json_type(content_type):
        raise _BodyError(f"Content-Type {content_type[:60]!r} is not JSON; send "
                         "'Content-Type: application/json'", _body_length(request) < 0,
                         status=415)
    if request.headers.get("transfer-encoding"):
        raise _BodyError("chunked request bodies are not supported; send Content-Length", True)
    length = _body_length(request) if "content-length" in request.headers else -1
    if length < 0:
        raise _BodyError("a Content-Length header is required", True)
    limit = serving.max_body_bytes
    if length > limit:
        raise _BodyError(f"request body of {length} bytes is over the limit of {limit} bytes "
                         "(--max-body-bytes); split the request",
                         length > _DRAIN_FACTOR * limit, status=413)
    return await request.body()


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"JSON Parse error: {err}") from err
    except RecursionError:  # the C decoder's depth guard: a body nested thousands deep
        raise RequestError("JSON Parse error: nested too deeply") from None


def _answer_predict(serving: _Serving, version: Optional[int],
                    body: bytes) -> Tuple[bytes, str, int]:
    """(JSON answer, version, rows) of one predict: the CPU-bound part, for the thread pool.
    A bad body is a 400 even before a model is loaded."""
    payload = _parse(body)
    model = serving.registry.model_for(version)  # this request keeps this model
    answer = predict(model, payload, serving.max_instances, serving.request_log)
    rows = len(answer.get("predictions") or answer.get("outputs") or ())
    return json.dumps(answer).encode("utf-8"), str(model.version), rows


async def _tf_serving(request: Request, name: str, version: Optional[int] = None,
                      metadata: bool = False, verb: Optional[str] = None) -> Response:
    """One request to a model path, GET or POST."""
    serving: _Serving = request.app.state.serving
    registry, method = serving.registry, request.method
    try:
        if name != registry.name:
            spec = f"Specific({name}, {version})" if version else f"Latest({name})"
            headers = _drop_body(request, serving) if method == "POST" else None
            return _json({"error": f"Servable not found for request: {spec}"}, 404, headers)
        if method == "GET":
            if verb:
                raise RequestError(f"use POST for :{verb}", status=405)
            return _json(registry.metadata(version) if metadata else registry.status(version))
        body = await _read_body(request, serving)
        if metadata or verb != "predict":
            _parse(body)
            raise RequestError(f"unsupported request POST {_target(request)}; this server "
                               "answers :predict (not :classify or :regress)",
                               status=400 if verb else 404)
        data, served, rows = await run_in_threadpool(_answer_predict, serving, version, body)
        request.state.rows = rows
        return Response(data, 200, {VERSION_HEADER: served}, media_type="application/json")
    except Exception as err:  # pylint: disable=broad-except
        return _error(err, method, _target(request))


def create_app(registry: ModelRegistry,  # pylint: disable=too-many-arguments
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_instances: int = DEFAULT_MAX_INSTANCES,
               metrics: Optional[ServingMetrics] = None, request_log: Any = None, *,
               token: Optional[str] = None, max_inflight: int = 0) -> FastAPI:
    """TF Serving's REST API over ``registry`` as a FastAPI app.

    ``token`` (default: none) makes every path but ``/health`` need ``Authorization: Bearer
    <token>``; ``max_inflight`` (default 0: no limit) sheds requests past that many running.

    A registry without an observer reports its loads and swaps to ``metrics`` (default: new
    ones). The registry's watcher is the caller's to start and stop; ``request_log`` is
    closed by :meth:`ModelHTTPServer.server_close`.
    """
    metrics = metrics if metrics is not None else ServingMetrics()
    if registry.observer is None:
        registry.attach(metrics)
    app = FastAPI(title="cartola model server",
                  description="TF Serving-compatible REST API (a subset): status, metadata, "
                              f"predict. Model: {registry.name}.", version="1")
    app.state.serving = _Serving(registry, max_body_bytes, max_instances, metrics, request_log)
    app.add_middleware(ShedLoad, max_inflight=max_inflight)
    if token:
        app.add_middleware(BearerAuth, token=token)
    app.add_middleware(_RecordMetrics, metrics=metrics)  # the outermost: 401s, 503s counted
    tags = ["TF Serving"]

    @app.get("/v1/models/{name:tfs_name}", tags=tags, responses=_ERRORS)
    async def model_status(request: Request, name: str):
        """Version status (GetModelStatus): the served version and versions that failed."""
        return await _tf_serving(request, name)

    @app.get("/v1/models/{name:tfs_name}/versions/{version:int}", tags=tags, responses=_ERRORS)
    async def version_status(request: Request, name: str, version: int):
        """Status of one version."""
        return await _tf_serving(request, name, version)

    @app.get("/v1/models/{name:tfs_name}/metadata", tags=tags, responses=_ERRORS)
    async def model_metadata(request: Request, name: str):
        """Signatures of the served version (GetModelMetadata)."""
        return await _tf_serving(request, name, metadata=True)

    @app.get("/v1/models/{name:tfs_name}/versions/{version:int}/metadata", tags=tags,
             responses=_ERRORS)
    async def version_metadata(request: Request, name: str, version: int):
        """Signatures of one version (404 unless it is the served one)."""
        return await _tf_serving(request, name, version, metadata=True)

    @app.post("/v1/models/{name:tfs_name}:predict", tags=tags, openapi_extra=_PREDICT_DOC,
              responses={200: {"model": PredictResponse}, **_ERRORS})
    async def model_predict(request: Request, name: str):
        """Predict with the served version: PRO probability per instance."""
        return await _tf_serving(request, name, verb="predict")

    @app.post("/v1/models/{name:tfs_name}/versions/{version:int}:predict", tags=tags,
              openapi_extra=_PREDICT_DOC, responses={200: {"model": PredictResponse}, **_ERRORS})
    async def version_predict(request: Request, name: str, version: int):
        """Predict with one version (404 unless it is the served one)."""
        return await _tf_serving(request, name, version, verb="predict")

    @app.get(METRICS_PATH, tags=["monitoring"],
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus' text format"}})
    async def prometheus_metrics(request: Request):
        """Request counts and latencies, rows scored, the served version, request log rows."""
        body, content_type = request.app.state.serving.metrics.exposition()
        return Response(body, 200, media_type=content_type)

    @app.get(HEALTH_PATH, tags=["monitoring"], responses={503: {"model": ErrorResponse}})
    async def health(request: Request):
        """200 when a version is loaded, else 503: for load balancers; says nothing else."""
        loaded = request.app.state.serving.registry.current is not None
        return _json({"status": "ok" if loaded else "loading"}, 200 if loaded else 503)

    @app.post(METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics_post(request: Request):
        """Scrapes are GETs."""
        return _json({"error": f"use GET for {METRICS_PATH}"}, 405,
                     _drop_body(request, request.app.state.serving))

    @app.api_route("/{path:path}", include_in_schema=False,
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def other(request: Request, path: str):
        """Everything else: other verbs, trailing slashes, unknown paths (a route, not a 404
        handler: Starlette's 404/405 bodies are not TF Serving's)."""
        serving: _Serving = request.app.state.serving
        method = request.method
        if method not in ("GET", "POST"):  # http.server's 501, as JSON
            return _json({"error": f"Unsupported method ({method!r})"}, 501,
                         _drop_body(request, serving))
        match = MODEL_PATH.match("/" + path)
        if match is None:
            return _json({"error": f"no such endpoint: {method} {_target(request)}; see "
                                   f"/v1/models/{serving.registry.name}"}, 404,
                         _drop_body(request, serving) if method == "POST" else None)
        return await _tf_serving(request, match["name"],
                                 int(match["version"]) if match["version"] else None,
                                 bool(match["metadata"]), match["verb"])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException):
        """Any HTTP error Starlette raises itself, in TF Serving's error shape."""
        return _json({"error": str(err.detail)}, err.status_code, err.headers)

    return app


# --------------------------------------------------------------------------------------------
# Running it.

def bind(host: str, port: int) -> socket.socket:
    """A listening socket: bound here, not by uvicorn, so port 0 gives the real port before
    serving starts and a port in use fails as an ``OSError`` at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def uvicorn_options(ssl: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """uvicorn's settings for every worker: quiet (the app logs what matters), long keep-alive,
    a bounded graceful shutdown, and ``ssl`` (``ssl_certfile``, ``ssl_keyfile``) if given."""
    return {"log_config": None, "log_level": "warning", "access_log": False, "lifespan": "off",
            "timeout_keep_alive": _IDLE_SECONDS, "timeout_graceful_shutdown": _GRACE_SECONDS,
            **(ssl or {})}


class ModelHTTPServer:
    """A FastAPI app under uvicorn in this process (one event loop, predict in the thread
    pool) on a socket bound at construction; :mod:`cartola.serving.workers` runs several.

    ``serve_forever()`` serves on the calling thread: on the main thread, uvicorn turns
    SIGINT/SIGTERM into a graceful shutdown (stop accepting, let running requests finish).
    ``start_background()`` serves from a daemon thread (tests, benchmarks). Either way
    ``shutdown()`` stops serving and ``server_close()`` closes the socket and the app's request
    log, whose open file is then renamed complete.
    """

    def __init__(self, app: FastAPI, host: str = DEFAULT_HOST, port: int = 0,
                 ssl: Optional[Dict[str, str]] = None):
        self.app = app
        self.scheme = "https" if ssl else "http"
        self._socket = bind(host, port)
        self.server_address: Tuple[str, int] = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(ssl)))
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8501``."""
        host, port = self.server_address
        return (f"{self.scheme}://[{host}]:{port}" if ":" in host
                else f"{self.scheme}://{host}:{port}")

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` or, on the main thread, SIGINT/SIGTERM."""
        self._server.run(sockets=[self._socket])

    def start_background(self, timeout: float = 30.0) -> "ModelHTTPServer":
        """Serve from a daemon thread; returns once uvicorn accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, name="model-server",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while (not self._server.started and self._thread.is_alive()
               and time.monotonic() < deadline):
            time.sleep(0.01)
        if not self._server.started:
            self.shutdown()
            self.server_close()
            raise RuntimeError("uvicorn did not start")
        return self

    def shutdown(self) -> None:
        """Stop serving: idle connections close, running requests finish (10 s at most).
        Safe from a signal handler; waits for a background thread to end."""
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)

    def server_close(self) -> None:
        """Close the listening socket, then the request log."""
        self._socket.close()
        request_log = self.app.state.serving.request_log
        if request_log is not None:
            request_log.close()


def start_background(app: FastAPI, host: str = DEFAULT_HOST, port: int = 0) -> ModelHTTPServer:
    """``app`` served from a daemon thread on ``host`` (a free port by default)."""
    return ModelHTTPServer(app, host, port).start_background()
