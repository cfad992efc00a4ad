"""Serving observability: ``GET /metrics`` and the request log. Fake models test the counts,
the log format, rotation, retention and the bounded queue quickly; the e2e test logs the
pipeline's pushed model and reads the logs back with TFDV."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import base64
import os
import shutil
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import tensorflow as tf  # the log writer imports it too: load it before timing anything
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from serving_helpers import FEATURES, NAME, ROW, FakeModel, sample_rows, http, running
from cartola.config import load_config
from cartola.serving.request_log import (LOGGED_AT, MODEL_VERSION, SCORE, RequestLogger,
                                            file_start, logged_files, read_logged,
                                            suffix_parts)
from cartola.serving.core import ModelRegistry, endpoint_of
from cartola.serving.metrics import ServingMetrics
from cartola.serving.model import build_examples, columns_from_instances
from cartola.serving.server import add_arguments

PREDICT = f"/v1/models/{NAME}:predict"


def scrape(server):
    """(content type, {(sample name, labels): value}) of ``GET /metrics``."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as response:
        content_type, text = response.headers["Content-Type"], response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, values


def requests_counted(values):
    """{(method, endpoint, status): count} of cartola_requests_total."""
    return {(dict(labels)["method"], dict(labels)["endpoint"], dict(labels)["status"]): value
            for (name, labels), value in values.items() if name == "cartola_requests_total"}


def parse(record: bytes) -> dict:
    """A logged record as {feature: [values]}."""
    parsed = {}
    for name, feature in tf.train.Example.FromString(record).features.feature.items():
        kind = feature.WhichOneof("kind")
        parsed[name] = list(getattr(feature, kind).value)
    return parsed


def wait_for(condition, seconds=10.0):
    """Poll ``condition`` (the writer thread works asynchronously) until true or timeout."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def make_logger(folder, **settings):
    """A RequestLogger logging every row unless ``sample`` says otherwise."""
    return RequestLogger(folder, **{"sample": 1.0, **settings})


# --------------------------------------------------------------------------------------------
# Metrics.

@pytest.mark.parametrize("path, endpoint", [
    (PREDICT, "predict"), (f"/v1/models/{NAME}/versions/3:predict", "predict"),
    (f"/v1/models/{NAME}", "status"), (f"/v1/models/{NAME}/versions/2?x=1", "status"),
    (f"/v1/models/{NAME}/metadata", "metadata"), ("/metrics", "metrics"),
    (f"/v1/models/{NAME}:classify", "other"), ("/admin/../../etc/passwd", "other")])
def test_endpoint_label_is_one_of_a_fixed_few(path, endpoint):
    assert endpoint_of(path) == endpoint


def test_metrics_count_the_requests_rows_loads_and_version(tmp_path):
    def loader(_path, version):
        if version == 2:
            raise OSError("corrupt")
        return FakeModel(version)

    for version in (1, 2):
        (tmp_path / NAME / str(version)).mkdir(parents=True)
    metrics = ServingMetrics()
    registry = ModelRegistry(tmp_path / NAME, NAME, 0.05, loader, observer=metrics)
    registry.refresh()  # 2 fails, 1 serves
    with running(registry, metrics=metrics) as server:
        for _ in range(3):
            assert http(server, "POST", PREDICT, {"instances": [ROW, ROW]})[0] == 200
        assert http(server, "POST", PREDICT, {"instances": [dict(ROW, a="x")]})[0] == 400
        assert http(server, "POST", PREDICT, {"inputs": {"a": [1.0] * 3, "n": [1] * 3,
                                                         "s": ["x"] * 3}})[0] == 200
        assert http(server, "GET", f"/v1/models/{NAME}")[0] == 200
        assert http(server, "GET", f"/v1/models/{NAME}/metadata")[0] == 200
        assert http(server, "GET", "/nowhere")[0] == 404
        content_type, values = scrape(server)
        assert content_type == CONTENT_TYPE_LATEST
        assert requests_counted(values) == {  # the scrape is counted once it is answered
            ("POST", "predict", "200"): 4, ("POST", "predict", "400"): 1,
            ("GET", "status", "200"): 1, ("GET", "metadata", "200"): 1,
            ("GET", "other", "404"): 1}
        assert values[("cartola_request_seconds_count", (("endpoint", "predict"),))] == 5
        assert values[("cartola_rows_scored_total", ())] == 9
        assert values[("cartola_model_version", ())] == 1
        assert values[("cartola_model_loads_total", (("result", "ok"),))] == 1
        assert values[("cartola_model_loads_total", (("result", "failed"),))] == 1
        assert values[("cartola_model_swaps_total", ())] == 0
        (registry.base_dir / "3").mkdir()
        assert registry.refresh()
        _, values = scrape(server)
        assert requests_counted(values)[("GET", "metrics", "200")] == 1
        assert values[("cartola_model_version", ())] == 3
        assert values[("cartola_model_swaps_total", ())] == 1
        assert values[("cartola_model_loads_total", (("result", "ok"),))] == 2
        assert values[("cartola_request_log_rows_total", ())] == 0


def test_each_server_has_its_own_registry_and_no_version_is_0(tmp_path):
    first, second = ServingMetrics(), ServingMetrics()
    first.record("predict", "POST", 200, 0.01, rows=5)
    first.record("/v1/models/x", "GET", 200, 0.01)  # not a known endpoint: "other"
    assert first.registry is not second.registry
    assert first.registry.get_sample_value("cartola_rows_scored_total") == 5
    assert second.registry.get_sample_value("cartola_rows_scored_total") == 0
    assert first.registry.get_sample_value("cartola_requests_total", {
        "method": "GET", "endpoint": "other", "status": "200"}) == 1
    registry = ModelRegistry(tmp_path / NAME, NAME)  # nothing to load
    with running(registry, metrics=second) as server:
        _, values = scrape(server)
        assert values[("cartola_model_version", ())] == 0
        assert http(server, "POST", "/metrics", {})[0] == 405


# --------------------------------------------------------------------------------------------
# The request log's format.

def test_appended_features_merge_into_the_example():
    example = tf.train.Example()
    example.features.feature["a"].float_list.value.append(1.5)
    example.features.feature["s"].bytes_list.value.append("ção".encode())
    for version, stamp, raw in ((3, 1_700_000_000_123, example.SerializeToString()),
                                (2 ** 40, 1, b"")):  # b"": every feature missing
        head, tail = suffix_parts(version, stamp)
        for score in (0.25, np.float32(0.123456789)):
            parsed = parse(raw + head + np.float32(score).tobytes() + tail)
            assert parsed[SCORE] == [np.float32(score)]
            assert parsed[MODEL_VERSION] == [version] and parsed[LOGGED_AT] == [stamp]
            assert set(parsed) - {SCORE, MODEL_VERSION, LOGGED_AT} == (
                {"a", "s"} if raw else set())


def test_server_logs_the_scored_bytes_of_every_request_form(tmp_path):
    metrics = ServingMetrics()
    registry = ModelRegistry(tmp_path / NAME, NAME, loader=lambda path, v: FakeModel(v),
                             observer=metrics)
    (registry.base_dir / "2").mkdir(parents=True)
    registry.refresh()
    log = make_logger(tmp_path / "logs", observer=metrics)
    rows = [ROW, {"a": 2.0, "n": None, "s": ""}]
    b64 = [b"\x0a\x00", build_examples({"a": [7.0]}, FEATURES)[0]]
    before = int(time.time() * 1000)
    with running(registry, metrics=metrics, request_log=log) as server:
        assert http(server, "POST", PREDICT, {"instances": rows})[0] == 200
        assert http(server, "POST", PREDICT, {"inputs": {"a": [3.0], "n": [4], "s": ["y"]}}
                    )[0] == 200
        assert http(server, "POST", PREDICT, {"instances": [
            {"b64": base64.b64encode(e).decode()} for e in b64]})[0] == 200
        assert http(server, "POST", PREDICT, {"instances": [dict(ROW, n=0.5)]})[0] == 400
        assert wait_for(lambda: log.current_file is not None)
        assert not logged_files(log.folder)  # still .part: readers do not see it yet
    after = int(time.time() * 1000)  # server_close closed the log
    sent = (build_examples(columns_from_instances(rows, FEATURES), FEATURES)
            + build_examples({"a": [3.0], "n": [4], "s": ["y"]}, FEATURES) + b64)
    files = logged_files(log.folder)
    assert len(files) == 1 and not list(log.folder.glob("*.part"))
    records = list(read_logged(files))
    assert len(records) == len(sent) == 5
    for record, raw in zip(records, sent):
        assert record.startswith(raw)
        parsed = parse(record)
        assert parsed[SCORE] == [np.float32(0.2)] and parsed[MODEL_VERSION] == [2]
        assert before <= parsed[LOGGED_AT][0] <= after
    assert metrics.registry.get_sample_value("cartola_request_log_rows_total") == 5
    assert metrics.registry.get_sample_value("cartola_request_log_dropped_total") == 0


def test_sampling_is_seeded_and_zero_means_no_logger(tmp_path):
    counts = []
    for _ in range(2):
        log = make_logger(tmp_path / "sampled", sample=0.3, seed=11)
        counts.append(log.log([b""] * 1000, np.zeros(1000, np.float32), 1))
        log.close()
    assert counts[0] == counts[1] and 230 < counts[0] < 370
    assert len(list(read_logged(logged_files(tmp_path / "sampled")))) == sum(counts)
    config = load_config(environ={}, project_home=str(tmp_path))
    assert RequestLogger.from_config(config, sample=0.0) is None
    assert RequestLogger.from_config(config.replace(request_log_sample=0.0)) is None
    log = RequestLogger.from_config(config, "other_model", log_dir=str(tmp_path / "x"))
    log.close()
    assert log.folder == tmp_path / "x" / "other_model" and log.sample == 1.0
    log = RequestLogger.from_config(config)
    log.close()
    assert log.folder == config.request_log_path


def test_serve_options():
    import argparse  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.request_log_dir, args.request_log_sample, args.no_request_log) == (
        None, None, False)
    args = parser.parse_args(["--request-log-sample", "0.25", "--no-request-log",
                              "--request-log-dir", "/tmp/logs"])
    assert (args.request_log_dir, args.request_log_sample, args.no_request_log) == (
        "/tmp/logs", 0.25, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--request-log-sample", "1.5"])


# --------------------------------------------------------------------------------------------
# Rotation, retention, the reader's window, the bounded queue.

def test_size_rotation_publishes_complete_files_in_order(tmp_path):
    log = make_logger(tmp_path, max_mb=1000 / 2 ** 20)  # ~1,000 bytes a file
    examples = build_examples({"a": [float(i) for i in range(30)]}, FEATURES)
    for i in range(0, 30, 3):
        assert log.log(examples[i:i + 3], np.arange(i, i + 3, dtype=np.float32), 1) == 3
    log.close()
    files = logged_files(tmp_path)
    assert len(files) >= 3 and not list(tmp_path.glob("*.part"))
    assert files == sorted(files, key=file_start)
    assert all(path.stat().st_size < 1000 + 200 for path in files)  # + at most one record
    records = [parse(r) for r in read_logged(files)]
    assert [r["a"][0] for r in records] == [float(i) for i in range(30)]
    assert [r[SCORE][0] for r in records] == [float(i) for i in range(30)]
    for path in files:  # the name's start and the mtime bound the file's records
        stamps = [parse(r)[LOGGED_AT][0] * 1000 for r in read_logged([path])]
        start = file_start(path)
        assert start.timestamp() * 1e6 <= min(stamps)
        assert max(stamps) <= path.stat().st_mtime_ns / 1000


def test_time_rotation_and_retention(tmp_path):
    old = time.time() - 3 * 86400
    stale = {"requests-20200101T000000000000Z-1.tfrecord": old,
             "requests-20200101T000000000000Z-2.tfrecord.part": old,  # a crashed server's
             "requests-20990101T000000000000Z-3.tfrecord": time.time(),
             "notes.txt": old}
    for name, mtime in stale.items():
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (mtime, mtime))
    log = make_logger(tmp_path, rotate_minutes=0.3 / 60, retention_days=1)
    assert log.log([b""], [0.5], 4) == 1

    def ours():
        return [p for p in logged_files(tmp_path) if p.name.endswith(f"-{os.getpid()}.tfrecord")]

    # The idle writer rotates on time, not only when the next row comes.
    assert wait_for(lambda: len(ours()) == 1, 5)
    assert log.current_file is None
    assert log.log([b""], [0.5], 4) == 1
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "notes.txt" in names and "requests-20990101T000000000000Z-3.tfrecord" in names
    assert not any(n.startswith("requests-2020") for n in names)
    assert len(ours()) == 2 and not list(tmp_path.glob("*.part"))


def test_logged_files_window(tmp_path):
    day = datetime(2026, 11, 20, tzinfo=timezone.utc)
    spans = {"a": (day, day + timedelta(hours=1)),
             "b": (day + timedelta(hours=1), day + timedelta(hours=2)),
             "c": (day + timedelta(hours=5), day + timedelta(hours=6))}
    paths = {}
    for key, (start, end) in spans.items():
        path = tmp_path / f"requests-{start:%Y%m%dT%H%M%S%f}Z-{ord(key)}.tfrecord"
        path.write_bytes(b"")
        os.utime(path, (end.timestamp(), end.timestamp()))
        paths[key] = path
    (tmp_path / f"requests-{day:%Y%m%dT%H%M%S%f}Z-9.tfrecord.part").write_bytes(b"")
    assert file_start(paths["b"]) == spans["b"][0]
    assert logged_files(tmp_path) == [paths["a"], paths["b"], paths["c"]]
    hour = timedelta(hours=1)
    assert logged_files(tmp_path, day + 1.5 * hour, day + 5 * hour) == [paths["b"]]
    assert logged_files(tmp_path, day + 2 * hour) == [paths["b"], paths["c"]]
    assert logged_files(tmp_path, end=day + hour) == [paths["a"]]
    naive = (day + 3 * hour).replace(tzinfo=None)  # naive = UTC
    assert logged_files(tmp_path, naive) == [paths["c"]]
    assert logged_files(tmp_path / "missing") == []


class _Stall:
    """A metrics observer that holds the writer thread in ``logged_rows`` until released."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.logged, self.dropped = 0, 0

    def logged_rows(self, rows):
        """Count, then wait: the writer stops taking batches off the queue."""
        self.logged += rows
        self.entered.set()
        assert self.release.wait(30)

    def dropped_rows(self, rows):
        """Count."""
        self.dropped += rows


@pytest.mark.parametrize("limits, queued", [({"max_queue": 2}, [2, 2, 2, 0]),
                                            ({"max_pending_rows": 5}, [2, 2, 0, 0])])
def test_full_queue_drops_and_counts_without_blocking(tmp_path, limits, queued):
    stall = _Stall()
    log = make_logger(tmp_path, observer=stall, **limits)
    assert log.log([b""] * 2, [0.1] * 2, 1) == 2
    assert stall.entered.wait(30)  # the writer holds the first batch
    started = time.perf_counter()
    got = [log.log([b""] * 2, [0.1] * 2, 1) for _ in range(3)]
    assert time.perf_counter() - started < 0.5  # put_nowait: no waiting for the writer
    assert [2] + got == queued
    assert stall.dropped == 2 * queued.count(0)
    stall.release.set()
    log.close()
    assert stall.logged == sum(queued)
    assert len(list(read_logged(logged_files(tmp_path)))) == sum(queued)
    assert log.log([b""], [0.1], 1) == 0  # closed: ignored


def test_a_write_error_drops_and_counts_and_the_writer_goes_on(tmp_path):
    metrics = ServingMetrics()
    log = make_logger(tmp_path / "logs", observer=metrics)
    shutil.rmtree(log.folder)  # the file cannot be created
    assert log.log([b""] * 3, [0.1] * 3, 1) == 3
    assert wait_for(lambda: metrics.registry.get_sample_value(
        "cartola_request_log_dropped_total") == 3)
    log.folder.mkdir()
    assert log.log([b""] * 2, [0.1] * 2, 1) == 2
    log.close()
    assert len(list(read_logged(logged_files(log.folder)))) == 2
    assert metrics.registry.get_sample_value("cartola_request_log_rows_total") == 2


# --------------------------------------------------------------------------------------------
# The real pushed model, read back by TFDV.

@pytest.mark.e2e
def test_logged_requests_round_trip_into_tfdv_statistics(pushed_project, tmp_path):
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    from cartola.serving.client import ServingClient  # pylint: disable=import-outside-toplevel
    config, _ = pushed_project
    base = tmp_path / "serving" / config.model_name
    shutil.copytree(config.model_serving_dir / "1", base / "1")
    metrics = ServingMetrics()
    registry = ModelRegistry(base, config.model_name, observer=metrics)
    registry.refresh()
    log = make_logger(tmp_path / "logs", observer=metrics)
    rows = sample_rows(config, 120)
    rows[0]["tempo_desperd"] = None
    with running(registry, metrics=metrics, request_log=log) as server:
        client = ServingClient(server.url, config.model_name)
        predictions = client.predict(rows[:50]) + client.predict_columns(
            {name: [r[name] for r in rows[50:100]] for name in config.numeric_features})
        for row in rows[100:]:
            predictions += client.predict([row])
        assert http(server, "POST", f"/v1/models/{config.model_name}:predict",
                    {"instances": [dict(rows[0], avg_3="abc")]})[0] == 400
        log.close()  # drain and publish before reading
        _, values = scrape(server)
    assert requests_counted(values) == {  # the client reads the feature list first
        ("GET", "metadata", "200"): 1, ("POST", "predict", "200"): 22,
        ("POST", "predict", "400"): 1}
    assert values[("cartola_rows_scored_total", ())] == len(rows)
    assert values[("cartola_request_log_rows_total", ())] == len(rows)
    assert values[("cartola_request_log_dropped_total", ())] == 0
    assert values[("cartola_model_version", ())] == 1
    files = logged_files(log.folder)
    stats = tfdv.generate_statistics_from_tfrecord(
        data_location=str(log.folder / "*.tfrecord")).datasets[0]
    assert stats.num_examples == len(rows) and files
    by_name = {f.path.step[0]: f for f in stats.features}
    sent = np.array([np.nan if r["avg_3"] is None else r["avg_3"] for r in rows], np.float32)
    assert by_name["avg_3"].num_stats.mean == pytest.approx(  # float32 values, float64 sums
        float(np.nanmean(sent.astype(np.float64))), rel=1e-9)
    assert by_name[SCORE].num_stats.mean == pytest.approx(
        float(np.mean(np.float32(predictions).astype(np.float64))), rel=1e-9)
    records = [parse(r) for r in read_logged(files)]
    assert [r[SCORE][0] for r in records] == [float(np.float32(p)) for p in predictions]
    assert {r[MODEL_VERSION][0] for r in records} == {1}
    assert "tempo_desperd" not in records[0]  # a missing value stays missing
