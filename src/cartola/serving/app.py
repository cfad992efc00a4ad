"""The TF Serving REST API of :mod:`cartola.serving.server` as a FastAPI app under uvicorn.

An alternative base for the same server, measured against ``http.server`` by
``bench/serve_frameworks.py``: same :class:`~cartola.serving.server.ModelRegistry` (hot swap),
same :func:`~cartola.serving.server.predict`, same routes, JSON error bodies
``{"error": ...}``, status codes and ``X-Model-Version`` header, so TF Serving clients and the
contract tests in ``tests/test_serving.py`` (``CARTOLA_TEST_SERVER=fastapi``) see no change.
What FastAPI adds: OpenAPI docs (``/docs``, ``/openapi.json``) and Starlette middleware.

Bodies stay raw bytes parsed by ``json`` rather than pydantic models: TF Serving's error texts
and status codes are the contract (FastAPI's 422 bodies are not), and pydantic validation of
1000-row requests would only repeat the checks :func:`predict` makes anyway. The pydantic
models below document the shapes in OpenAPI and validate nothing.
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

from cartola.serving.model import RequestError
from cartola.serving.server import (_PATH, DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES,
                                    DEFAULT_MAX_INSTANCES, DEFAULT_PORT, VERSION_HEADER,
                                    ModelRegistry, predict)

LOG = logging.getLogger("cartola.serving")

# As in server.py: bodies over the limit up to this multiple of it are drained (uvicorn does
# that for a body the app never reads), so the client reads the 400; beyond it, the
# connection is closed.
_DRAIN_FACTOR = 8
_IDLE_SECONDS = 120  # http.server's socket timeout; uvicorn's default keep-alive is only 5 s


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
    """``predictions`` answers ``instances``; ``outputs`` answers ``inputs``."""

    predictions: Optional[List[List[float]]] = None
    outputs: Optional[List[List[float]]] = None


class ErrorResponse(BaseModel):
    """Every error, as TF Serving writes it."""

    error: str


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 405, 503)}
_PREDICT_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema(),
    "example": {"signature_name": "predict_raw", "instances": [{"anos_como_pro": 1}]}}}}}


# --------------------------------------------------------------------------------------------
# The app.

@dataclass(frozen=True)
class _Serving:
    registry: ModelRegistry
    max_body_bytes: int
    max_instances: int
    threaded: bool


class _BodyError(RequestError):
    """A refused body; ``close`` when the rest of it is not worth reading."""

    def __init__(self, message: str, close: bool):
        super().__init__(message)
        self.close = close


def _json(body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
    # json.dumps as server.py writes it (NaN allowed): Starlette's JSONResponse refuses NaN.
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
    """Path and query, as http.server's ``self.path`` shows them in messages."""
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


async def _read_body(request: Request, serving: _Serving) -> bytes:
    if request.headers.get("transfer-encoding"):
        raise _BodyError("chunked request bodies are not supported; send Content-Length", True)
    length = _body_length(request) if "content-length" in request.headers else -1
    if length < 0:
        raise _BodyError("a Content-Length header is required", True)
    limit = serving.max_body_bytes
    if length > limit:
        raise _BodyError(f"request body of {length} bytes is over the limit of {limit} bytes "
                         "(--max-body-bytes); split the request",
                         length > _DRAIN_FACTOR * limit)
    return await request.body()


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"JSON Parse error: {err}") from err


def _model(registry: ModelRegistry, version: Optional[int]):
    model = registry.current  # read once: this request keeps this model
    if model is None:
        raise RequestError(f"no version of model {registry.name} is loaded yet (watching "
                           f"{registry.base_dir})", status=503)
    if version is not None and version != model.version:
        raise RequestError(f"Servable not found for request: Specific({registry.name}, "
                           f"{version}); serving version {model.version}", status=404)
    return model


def _answer_predict(serving: _Serving, version: Optional[int], body: bytes) -> Tuple[bytes, str]:
    """JSON parse, model lookup, predict and JSON dump: the CPU-bound part of a predict, in
    server.py's order (a bad body is a 400 even before a model is loaded)."""
    payload = _parse(body)
    model = _model(serving.registry, version)
    answer = predict(model, payload, serving.max_instances)
    return json.dumps(answer).encode("utf-8"), str(model.version)


async def _tf_serving(request: Request, name: str, version: Optional[int] = None,
                      metadata: bool = False, verb: Optional[str] = None) -> Response:
    """One TF Serving request, decided as server.py's ``_Handler._route`` decides it."""
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
            if metadata:
                model = _model(registry, version)
                return _json({"model_spec": {"name": registry.name, "signature_name": "",
                                             "version": str(model.version)},
                              "metadata": {"signature_def": {
                                  "signature_def": model.signature_defs}}})
            return _json(registry.status(version))
        body = await _read_body(request, serving)
        if metadata or verb != "predict":
            _parse(body)
            raise RequestError(f"unsupported request POST {_target(request)}; this server "
                               "answers :predict (not :classify or :regress)",
                               status=400 if verb else 404)
        if serving.threaded:
            data, served = await run_in_threadpool(_answer_predict, serving, version, body)
        else:
            data, served = _answer_predict(serving, version, body)
        return Response(data, 200, {VERSION_HEADER: served}, media_type="application/json")
    except Exception as err:  # pylint: disable=broad-except
        return _error(err, method, _target(request))


def create_app(registry: ModelRegistry, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_instances: int = DEFAULT_MAX_INSTANCES, threaded: bool = True) -> FastAPI:
    """The TF Serving REST API over ``registry`` as a FastAPI app.

    ``threaded`` runs predict (JSON parse, TensorFlow call, JSON dump) in Starlette's thread
    pool, as a plain ``def`` endpoint would; False runs it on the event loop (``async def``),
    which saves the thread hop but stops every other connection while TensorFlow computes.
    The registry's watcher is the caller's to start and stop, as with ``ModelServer``.
    """
    app = FastAPI(title="cartola model server",
                  description="TF Serving-compatible REST API (a subset): status, metadata, "
                              f"predict. Model: {registry.name}.", version="1")
    app.state.serving = _Serving(registry, max_body_bytes, max_instances, threaded)
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

    @app.api_route("/{path:path}", include_in_schema=False,
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def other(request: Request, path: str):
        """Everything else, with server.py's answers: other verbs, trailing slashes, unknown
        paths (a route, not a 404 handler: Starlette's 404/405 bodies are not TF Serving's)."""
        serving: _Serving = request.app.state.serving
        method = request.method
        if method not in ("GET", "POST"):  # http.server's 501, as JSON
            return _json({"error": f"Unsupported method ({method!r})"}, 501,
                         _drop_body(request, serving))
        match = _PATH.match("/" + path)
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

def _config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn settings matching ModelServer: idle keep-alive 120 s, no access log (the
    ``cartola.serving`` logger reports errors), no lifespan (the registry is started apart)."""
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          timeout_keep_alive=_IDLE_SECONDS, timeout_graceful_shutdown=10,
                          **options)


def run_uvicorn(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn installs the handlers): one process, like
    ``cartola serve``; more workers would each load the model."""
    uvicorn.Server(_config(app, host=host, port=port)).run()


class BackgroundServer:
    """``app`` under uvicorn in a daemon thread on a bound socket, with ModelServer's
    ``url``/``server_address``/``shutdown()``/``server_close()`` so tests and benchmarks
    drive both servers alike."""

    def __init__(self, app: FastAPI, host: str = DEFAULT_HOST, port: int = 0):
        # Bound here, not by uvicorn, so port 0 gives a known free port before the start.
        self._socket = socket.create_server((host, port))
        self.server_address = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(_config(app))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="model-server-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8501``."""
        host, port = self.server_address
        return f"http://{host}:{port}"

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        """Start serving; returns once uvicorn accepts connections."""
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
        """Stop serving: uvicorn closes idle connections, lets running requests finish."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(30)

    def server_close(self) -> None:
        """Close the listening socket."""
        self._socket.close()


def start_background(app: FastAPI, host: str = DEFAULT_HOST, port: int = 0) -> BackgroundServer:
    """``app`` served from a daemon thread on ``host`` (a free port by default)."""
    return BackgroundServer(app, host, port).start()
