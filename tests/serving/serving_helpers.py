"""The serving tests' fakes and HTTP helpers: a fake model that answers version/10, a
registry of fake versions, the server in a thread, one request through urllib."""
from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import SAMPLE_CSV
from cartola.serving.app import create_app, start_background
from cartola.serving.core import ModelRegistry
from cartola.serving.model import RawFeature

NAME = "cartola_pro"
FEATURES = {"a": RawFeature("a", "float", True), "n": RawFeature("n", "int", False),
            "s": RawFeature("s", "string", False)}


LABEL = {"label": "churn", "positive_label": "Yes"}


class FakeModel:  # pylint: disable=too-many-instance-attributes
    """Answers version/10 for every row; ``gate`` holds predictions until set."""

    def __init__(self, version, gate=None):
        self.version = version
        self.path = Path(f"/fake/{version}")
        self.features = FEATURES
        self.label = LABEL
        self.signature_defs = {"predict_raw": {"inputs": {
            "a": {"dtype": "DT_FLOAT"}, "n": {"dtype": "DT_FLOAT"}, "s": {"dtype": "DT_STRING"}}}}
        self.gate = gate
        self.entered = threading.Event()
        self.seen = []

    def predict_columns(self, columns):
        """version / 10 per row, once the gate (if any) opens."""
        self.entered.set()
        self.seen.append(columns)
        if self.gate is not None:
            assert self.gate.wait(30)
        return np.full(len(columns["a"]), self.version / 10, dtype=np.float32)

    def predict_serialized(self, serialized):
        """version / 10 per example."""
        return np.full(len(serialized), self.version / 10, dtype=np.float32)


@contextlib.contextmanager
def running(registry, **options):
    """The server (the FastAPI app under uvicorn; ``options`` of ``create_app``: limits,
    metrics, request log) on a free loopback port, in a thread, for the block; closing it
    closes the request log."""
    server = start_background(create_app(registry, **options))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        registry.stop()


def http(server, method, path, body=None, raw=None):
    """(status, parsed JSON, headers) of one request through urllib."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def fake_registry(tmp_path, versions=(1,), loader=None, poll=0.05):
    """A registry over empty version folders, loaded with fake models."""
    base = tmp_path / NAME
    for version in versions:
        (base / str(version)).mkdir(parents=True)
    registry = ModelRegistry(base, NAME, poll, loader or (lambda path, v: FakeModel(v)))
    registry.refresh()
    return registry


ROW = {"a": 1.5, "n": 3, "s": "x"}


def sample_rows(config, n=40):
    """The first ``n`` sample rows as instances of the numeric features (NaN as None)."""
    frame = pd.read_csv(SAMPLE_CSV, nrows=n)
    rows = []
    for _, record in frame.iterrows():
        rows.append({name: (None if pd.isna(record[name]) else record[name].item()
                            if hasattr(record[name], "item") else record[name])
                     for name in config.numeric_features})
    return rows
