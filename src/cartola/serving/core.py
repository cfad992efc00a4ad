"""The model server's framework-neutral core: the served version (hot swap) and predict.

:class:`ModelRegistry` serves the highest integer version Pusher wrote under a folder, unless
``served.json`` pins one (``cartola rollback``, see :mod:`cartola.published.served`). A watcher
thread polls the folder; a new served version is loaded and warmed up completely before one
reference assignment swaps it in, so requests already running finish on the model they
started with. :func:`predict` answers one TF Serving predict body with a model. Nothing here
speaks HTTP (:mod:`cartola.serving.app` does), and TensorFlow is imported only when the first
model loads.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from cartola.published.served import ServedVersionError, pinned_version
from cartola.serving.model import (EXAMPLES_SIGNATURE, RAW_SIGNATURE, RequestError, ServedModel,
                                   build_examples, columns_from_inputs, columns_from_instances,
                                   decode_b64, is_b64)
from cartola.published.versions import model_versions

LOG = logging.getLogger("cartola.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # 10,000 rows of 20 numbers as JSON rows: ~5 MB
DEFAULT_MAX_INSTANCES = 10_000
VERSION_HEADER = "X-Model-Version"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"

# TF Serving's model paths: /v1/models/<name>[/versions/<n>][/metadata][:<verb>].
MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                        r"(?:/(?P<metadata>metadata))?(?::(?P<verb>[A-Za-z]+))?/?$")


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

    def model_for(self, version: Optional[int] = None):
        """The model answering a request for ``version`` (None: whichever serves). The caller
        keeps the one returned for the whole request, even if a swap happens meanwhile."""
        model = self._current  # read once
        if model is None:
            raise RequestError(f"no version of model {self.name} is loaded yet (watching "
                               f"{self.base_dir})", status=503)
        if version is not None and version != model.version:
            raise RequestError(f"Servable not found for request: Specific({self.name}, "
                               f"{version}); serving version {model.version}", status=404)
        return model

    def metadata(self, version: Optional[int] = None) -> dict:
        """TF Serving's GetModelMetadataResponse as JSON: the signatures."""
        model = self.model_for(version)
        metadata = {"signature_def": {"signature_def": model.signature_defs}}
        if model.label:
            metadata["label"] = model.label
        return {"model_spec": {"name": self.name, "signature_name": "",
                               "version": str(model.version)}, "metadata": metadata}

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
# Requests.

def endpoint_of(path: str) -> str:
    """The metrics' endpoint label of a request path: one of a fixed few, never the path."""
    path = path.split("?", 1)[0]
    if path == METRICS_PATH:
        return "metrics"
    if path == HEALTH_PATH:
        return "health"
    match = MODEL_PATH.match(path)
    if match is None:
        return "other"
    if match["verb"]:
        return "predict" if match["verb"] == "predict" else "other"
    return "metadata" if match["metadata"] else "status"


def predict(model, payload: Any, max_instances: int = DEFAULT_MAX_INSTANCES,
            request_log: Any = None) -> dict:
    """Answer one predict request body (already parsed JSON) with ``model``; log the scored
    rows to ``request_log`` (a :class:`cartola.serving.request_log.RequestLogger`) if any."""
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
    answer = {"predictions": result} if rows_form else {"outputs": result}
    answer.update(model.label or {})
    return answer


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
