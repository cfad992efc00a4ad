"""REST server and client: real HTTP on 127.0.0.1. Fake models test the protocol, the limits
and the version swap quickly; e2e tests serve the pipeline's pushed SavedModel."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import base64
import contextlib
import json
import math
import shutil
import threading
import time

import numpy as np
import pytest

from serving_helpers import (FEATURES, LABEL, NAME, ROW, FakeModel, fake_registry, http,
                             running, sample_rows)
from cartola.serving.client import ServingClient, ServingError
from cartola.serving.core import ModelRegistry
from cartola.serving.model import RawFeature, check_value, columns_from_instances


@pytest.mark.parametrize("feature, value, expected", [
    (FEATURES["a"], 2, 2.0), (FEATURES["n"], 4.0, 4), (FEATURES["n"], math.nan, None),
    (FEATURES["n"], None, None), (FEATURES["s"], "", None), (FEATURES["s"], "b", "b")])
def test_check_value_accepts(feature, value, expected):
    assert check_value(feature, value) == expected


@pytest.mark.parametrize("feature, value, message", [
    (FEATURES["a"], "1.5", "must be a number"), (FEATURES["a"], True, "must be a number"),
    (FEATURES["a"], math.inf, "must be finite"), (FEATURES["a"], None, "is required"),
    (FEATURES["a"], math.nan, "is required"), (FEATURES["n"], 1.5, "must be an integer"),
    (FEATURES["s"], 3, "must be a string")])
def test_check_value_rejects(feature, value, message):
    with pytest.raises(ValueError, match=message):
        check_value(feature, value)


def test_instances_become_columns_and_errors_are_listed():
    columns = columns_from_instances([ROW, {"a": 2, "n": None, "s": ""}], FEATURES)
    assert columns == {"a": [1.5, 2.0], "n": [3, None], "s": ["x", None]}
    with pytest.raises(ValueError) as err:
        columns_from_instances([dict(ROW, id=1), {"a": 1}, dict(ROW, a="x")], FEATURES)
    text = str(err.value)
    assert "instance 0: unknown feature(s) ['id']" in text
    assert "instance 1: missing feature(s) ['n', 's']" in text
    assert "instance 2: feature 'a' must be a number" in text


LONG_NAME = "nome_ção" * 20  # a key longer than 127 bytes: two-byte length prefixes


def _encoder_columns():
    """Checked columns with every kind, missing values, extreme ints and floats, non-ASCII and
    long strings: six hand-picked rows, then 300 seeded random ones in which most rows share a
    few layouts (encoded as blocks) and the rest are rare (encoded row by row)."""
    columns = {"a": [1.5, -0.0, 3.3e38, 1e-40, None, 0.1],
               "n": [0, -1, 2 ** 63 - 1, -(2 ** 63), 300, None],
               "s": ["x", "ção" * 60, "", None, "1920x1080", None],
               LONG_NAME: [2.5, None, None, 1.0, 0.0, None]}
    rng = np.random.default_rng(7)
    for _ in range(300):
        rare = rng.random() < 0.1
        columns["a"].append(None if rare else float(rng.normal() * 10.0 ** rng.integers(-40, 38)))
        columns["n"].append(int(rng.integers(-2 ** 63, 2 ** 63 - 1)) if rare
                            else int(rng.integers(0, 100)))
        columns["s"].append(str(rng.choice(["ção", "x", "", "€uro" * 40])) if rare
                            else str(rng.choice(["ab", "çã"])))
        columns[LONG_NAME].append(None if rng.random() < 0.3 else float(rng.random()))
    columns = {name: values + [None] for name, values in columns.items()}  # nothing present
    return columns


def test_examples_parse_like_protobuf_built_ones():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from cartola.serving.model import build_examples  # pylint: disable=import-outside-toplevel
    features = dict(FEATURES, **{LONG_NAME: RawFeature(LONG_NAME, "float", False)})
    columns = _encoder_columns()
    rows = len(columns["a"])
    expected = []
    for i in range(rows):
        example = tf.train.Example()
        for name, values in columns.items():
            value, feature = values[i], example.features.feature
            if value is None:
                continue
            if features[name].kind == "int":
                feature[name].int64_list.value.append(value)
            elif features[name].kind == "float":
                feature[name].float_list.value.append(value)
            else:
                feature[name].bytes_list.value.append(value.encode())
        expected.append(example)
    serialized = build_examples(columns, features)
    assert len(serialized) == rows and serialized[-1] == b""
    for i, data in enumerate(serialized):
        assert tf.train.Example.FromString(data) == expected[i], i
    # Numpy columns, as batch scoring passes them (NaN = missing number, ints as float64 or
    # int64), give the same bytes; float64 holds these ints exactly.
    small = [v if v is None or abs(v) < 2 ** 53 else 2 ** 53 for v in columns["n"]]
    arrays = {"a": np.array(columns["a"], dtype=float), "n": np.array(small, dtype=float),
              "s": np.array(columns["s"], dtype=object),
              LONG_NAME: np.array(columns[LONG_NAME], dtype=float)}
    assert build_examples(arrays, features) == build_examples(dict(columns, n=small), features)
    present = [i for i, v in enumerate(columns["n"]) if v is not None]
    assert build_examples({"n": np.array([columns["n"][i] for i in present])}, features) == (
        build_examples({"n": [columns["n"][i] for i in present]}, features))


def test_status_metadata_and_both_predict_forms(tmp_path):
    registry = fake_registry(tmp_path, versions=(1, 3))
    with running(registry) as server:
        status, body, _ = http(server, "GET", f"/v1/models/{NAME}")
        assert status == 200 and body == {"model_version_status": [{
            "version": "3", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}
        assert http(server, "GET", f"/v1/models/{NAME}/versions/3")[0] == 200
        assert http(server, "GET", f"/v1/models/{NAME}/versions/1")[0] == 404
        status, body, headers = http(server, "POST", f"/v1/models/{NAME}:predict",
                                     {"signature_name": "predict_raw", "instances": [ROW, ROW]})
        # Each answer names what its scores are the probability of.
        assert status == 200 and body == {"predictions": [[pytest.approx(0.3)]] * 2, **LABEL}
        assert headers["X-Model-Version"] == "3"
        status, body, _ = http(server, "POST", f"/v1/models/{NAME}/versions/3:predict",
                               {"inputs": {"a": [1.0], "n": [2], "s": ["y"]}})
        assert status == 200 and body == {"outputs": [[pytest.approx(0.3)]], **LABEL}
        b64 = {"b64": base64.b64encode(b"example").decode()}
        status, body, _ = http(server, "POST", f"/v1/models/{NAME}:predict",
                               {"instances": [b64, b64]})
        assert status == 200 and len(body["predictions"]) == 2
        client = ServingClient(server.url, NAME)
        assert client.predict([{"a": 1.0, "n": None}]) == [pytest.approx(0.3)]
        # The client sends every feature: absent and None become NaN / '' (missing).
        assert registry.current.seen[-1] == {"a": [1.0], "n": [None], "s": [None]}
        assert client.raw_inputs() == {"a": "DT_FLOAT", "n": "DT_FLOAT", "s": "DT_STRING"}


@pytest.mark.parametrize("path, body, status, message", [
    (f"/v1/models/{NAME}:predict", {"instances": [dict(ROW, a="x")]}, 400, "must be a number"),
    (f"/v1/models/{NAME}:predict", {"instances": [dict(ROW, extra=1)]}, 400, "unknown feature"),
    (f"/v1/models/{NAME}:predict", {"instances": [{"a": 1.0}]}, 400, "missing feature"),
    (f"/v1/models/{NAME}:predict", {"instances": [dict(ROW, n=0.5)]}, 400, "integer"),
    (f"/v1/models/{NAME}:predict", {"instances": []}, 400, "non-empty"),
    (f"/v1/models/{NAME}:predict", {"instances": [ROW], "inputs": {}}, 400, "exactly one"),
    (f"/v1/models/{NAME}:predict", {"signature_name": "nope", "instances": [ROW]}, 400,
     "not found"),
    (f"/v1/models/{NAME}:predict", {"inputs": {"a": [1.0, 2.0], "n": [1], "s": ["", ""]}}, 400,
     "equal length"),
    (f"/v1/models/{NAME}:predict", {"instances": [ROW] * 11}, 400, "limit of 10"),
    (f"/v1/models/{NAME}:classify", {"examples": [ROW]}, 400, ":predict"),
    ("/v1/models/other:predict", {"instances": [ROW]}, 404, "Servable not found"),
    (f"/v1/models/{NAME}/versions/7:predict", {"instances": [ROW]}, 404, "serving version 1"),
    ("/v2/elsewhere", {"instances": [ROW]}, 404, "no such endpoint"),
])
def test_bad_requests_get_an_error_message(tmp_path, path, body, status, message):
    with running(fake_registry(tmp_path), max_instances=10) as server:
        got, answer, _ = http(server, "POST", path, body)
        assert got == status and message in answer["error"], answer
        assert http(server, "POST", f"/v1/models/{NAME}:predict", {"instances": [ROW]})[0] == 200


def test_bad_json_gets_400_an_oversized_body_413_and_the_server_goes_on(tmp_path):
    with running(fake_registry(tmp_path), max_body_bytes=2000) as server:
        status, answer, _ = http(server, "POST", f"/v1/models/{NAME}:predict", raw=b"{nope")
        assert status == 400 and "JSON" in answer["error"]
        big = json.dumps({"instances": [ROW] * 200}).encode()
        status, answer, _ = http(server, "POST", f"/v1/models/{NAME}:predict", raw=big)
        assert status == 413 and "over the limit of 2000 bytes" in answer["error"]
        # Kept-alive connection after a refused body: the next request still works.
        client = ServingClient(server.url, NAME)
        with pytest.raises(ServingError) as err:
            client.request("POST", f"/v1/models/{NAME}:predict", {"instances": [ROW] * 200})
        assert err.value.status == 413
        assert client.predict([ROW]) == [pytest.approx(0.1)]


def test_no_version_yet_is_503_then_served_when_pushed(tmp_path):
    registry = fake_registry(tmp_path, versions=())
    with running(registry.start()) as server:
        assert http(server, "POST", f"/v1/models/{NAME}:predict", {"instances": [ROW]})[0] == 503
        assert http(server, "GET", f"/v1/models/{NAME}")[0] == 404
        (registry.base_dir / "1").mkdir(parents=True)
        assert ServingClient(server.url, NAME).wait_for_version(1, timeout=10) == 1


def test_new_version_swaps_in_after_loading_and_in_flight_requests_finish(tmp_path):
    gate, loading, loaded = threading.Event(), threading.Event(), threading.Event()
    first = FakeModel(1, gate=gate)

    def loader(_path, version):
        if version == 1:
            return first
        loading.set()
        assert loaded.wait(30)  # a slow load: version 1 must keep answering meanwhile
        return FakeModel(version)

    registry = fake_registry(tmp_path, loader=loader)
    with running(registry.start()) as server:
        in_flight = {}
        thread = threading.Thread(target=lambda: in_flight.update(result=http(
            server, "POST", f"/v1/models/{NAME}:predict", {"instances": [ROW]})))
        thread.start()
        assert first.entered.wait(10)  # the request is inside version 1's predict
        (registry.base_dir / ".staging-x").mkdir()  # hidden: ignored
        (registry.base_dir / "2").mkdir()
        assert loading.wait(10)
        assert http(server, "GET", f"/v1/models/{NAME}")[1]["model_version_status"][0][
            "version"] == "1"
        loaded.set()
        client = ServingClient(server.url, NAME)
        assert client.wait_for_version(2, timeout=10) == 2
        gate.set()  # version 1 finishes the request it started
        thread.join(10)
        status, body, headers = in_flight["result"]
        assert (status, body["predictions"], headers["X-Model-Version"]) == (
            200, [[pytest.approx(0.1)]], "1")
        assert client.predict([ROW]) == [pytest.approx(0.2)] and client.last_version == "2"


def test_failed_version_is_reported_and_previous_keeps_serving(tmp_path):
    def loader(_path, version):
        if version == 2:
            raise OSError("corrupt variables")
        return FakeModel(version)

    registry = fake_registry(tmp_path, versions=(1, 2), loader=loader)
    with running(registry) as server:
        status, body, _ = http(server, "GET", f"/v1/models/{NAME}")
        assert status == 200
        assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [
            ("1", "AVAILABLE"), ("2", "END")]
        assert "corrupt variables" in body["model_version_status"][1]["status"]["error_message"]
        assert ServingClient(server.url, NAME).predict([ROW]) == [pytest.approx(0.1)]


def test_server_binds_loopback_by_default(tmp_path):
    with running(fake_registry(tmp_path)) as server:
        assert server.server_address[0] == "127.0.0.1"


# --------------------------------------------------------------------------------------------
# The real pushed model.

@pytest.fixture(scope="module")
def real_serving(pushed_project, tmp_path_factory):
    """A copy of the fixture's serving folder (version 1), served on a free port."""
    config, _ = pushed_project
    base = tmp_path_factory.mktemp("serving") / config.model_name
    shutil.copytree(config.model_serving_dir / "1", base / "1")
    registry = ModelRegistry(base, config.model_name, poll_seconds=0.2)
    registry.refresh()
    with running(registry.start()) as server:
        yield config, registry, server


def _direct(config, path, rows):
    """The SavedModel called in-process: predict_raw with float tensors (NaN = missing)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    model = tf.saved_model.load(str(path))
    tensors = {name: tf.constant([math.nan if r[name] is None else float(r[name]) for r in rows],
                                 dtype=tf.float32) for name in config.numeric_features}
    return model.signatures["predict_raw"](**tensors)["probability"].numpy().ravel(), model


@pytest.mark.e2e
def test_http_predictions_equal_the_saved_model_called_directly(real_serving):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    config, registry, server = real_serving
    rows = sample_rows(config)
    rows[0]["tempo_desperd"] = None  # a missing optional value travels as NaN
    expected, model = _direct(config, registry.base_dir / "1", rows)
    client = ServingClient(server.url, config.model_name)
    by_rows = np.asarray(client.predict(rows), dtype=np.float32)
    by_columns = np.asarray(client.predict_columns(
        {name: [r[name] for r in rows] for name in config.numeric_features}), dtype=np.float32)
    np.testing.assert_allclose(by_rows, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(by_rows, by_columns)
    # serving_default with b64 tf.Examples built here agrees too.
    examples = []
    for row in rows:
        example = tf.train.Example()
        for name, value in row.items():
            if value is None:
                continue
            if registry.current.features[name].kind == "int":
                example.features.feature[name].int64_list.value.append(int(value))
            else:
                example.features.feature[name].float_list.value.append(value)
        examples.append(example.SerializeToString())
    status, body, _ = http(server, "POST", f"/v1/models/{config.model_name}:predict",
                           {"instances": [{"b64": base64.b64encode(e).decode()}
                                          for e in examples]})
    assert status == 200
    direct = model.signatures["serving_default"](examples=tf.constant(examples))
    np.testing.assert_array_equal(np.asarray(body["predictions"], dtype=np.float32).ravel(),
                                  direct["probability"].numpy().ravel())
    # The sample's label is exported as 0/1: scores are the probability of 1.
    assert (body["label"], body["positive_label"]) == (config.label, "1")
    assert http(server, "GET", f"/v1/models/{config.model_name}/metadata")[1]["metadata"][
        "label"] == {"label": config.label, "positive_label": "1"}
    inputs = client.raw_inputs()
    assert set(inputs) == set(config.numeric_features)


@pytest.mark.e2e
def test_real_model_bad_requests_get_400(real_serving):
    config, _, server = real_serving
    row = sample_rows(config, 1)[0]
    path = f"/v1/models/{config.model_name}:predict"
    cases = [(dict(row, avg_3="abc"), "must be a number"),
             (dict(row, escalacoes=2.5), "must be an integer"),
             (dict(row, anos_como_pro=None), "is required"),
             (dict(row, coluna_nova=1), "unknown feature"),
             ({k: v for k, v in row.items() if k != "avg_4"}, "missing feature")]
    for instance, message in cases:
        status, body, _ = http(server, "POST", path,
                               {"signature_name": "predict_raw", "instances": [instance]})
        assert status == 400 and message in body["error"], (instance, body)
    status, body, _ = http(server, "POST", path, {"instances": [{"b64": "bm90IGFuIGV4YW1wbGU="}]})
    assert status == 400 and "rejected the examples" in body["error"]


@contextlib.contextmanager
def _hammering(url, name, rows, threads=3):
    """Threads predicting ``rows`` until the block ends: yields (answers, errors)."""
    answers, errors, stop = [], [], threading.Event()

    def hammer():
        own = ServingClient(url, name)
        while not stop.is_set():
            try:
                answers.append((own.predict(rows), own.last_version))
            except Exception as err:  # pylint: disable=broad-except
                errors.append(err)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield answers, errors
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)


@pytest.mark.e2e
def test_newly_pushed_version_is_served_without_failing_requests(real_serving, tmp_path):
    from cartola.pipeline.components import publish_model  # pylint: disable=import-outside-toplevel
    config, registry, server = real_serving
    rows = sample_rows(config, 5)
    client = ServingClient(server.url, config.model_name)
    before = client.predict(rows)
    # Same weights, new fingerprint: publish_model would not push an identical model again.
    staging = tmp_path / "candidate"
    shutil.copytree(registry.base_dir / "1", staging)
    (staging / "fingerprint.pb").unlink()
    with _hammering(server.url, config.model_name, rows) as (answers, errors):
        version, pushed = publish_model(staging, registry.base_dir)
        assert (version, pushed) == (2, True)
        assert client.wait_for_version(2, timeout=60) == 2
        deadline = time.monotonic() + 30
        while not any(v == "2" for _, v in answers) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not errors, errors[:3]
    assert {v for _, v in answers} >= {"2"} and len(answers) > 10
    assert all(p == pytest.approx(before, abs=1e-6) for p, _ in answers)
    assert client.served_versions() == [2]
    versioned = ServingClient(server.url, config.model_name, version=2)
    assert versioned.predict(rows) == pytest.approx(before, abs=1e-6)
    with pytest.raises(ServingError) as err:
        ServingClient(server.url, config.model_name, version=1).predict(rows)
    assert err.value.status == 404


def test_pinned_version_is_served_and_a_bad_pin_keeps_the_current_model(tmp_path):
    registry = fake_registry(tmp_path, versions=(1, 2, 3))
    assert registry.current.version == 3
    pin = registry.base_dir / "served.json"
    pin.write_text(json.dumps({"version": 1}))
    assert registry.refresh() and registry.current.version == 1
    pin.write_text("{broken")
    assert not registry.refresh() and registry.current.version == 1
    pin.write_text(json.dumps({"version": 9}))  # no such version: keep serving 1
    assert not registry.refresh() and registry.current.version == 1
    pin.unlink()
    assert registry.refresh() and registry.current.version == 3
