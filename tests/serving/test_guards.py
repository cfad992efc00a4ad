"""The server under hostile input, overload, shutdown and without credentials: bearer tokens,
load shedding, body limits, idle connections, several workers and SIGTERM under load. Fake
models test the rules in-process quickly; e2e tests run ``python -m cartola.serving.server
--workers 2`` on the pipeline's pushed SavedModel, as a user would."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import psutil
import pytest

from serving_helpers import NAME, ROW, FakeModel, sample_rows, fake_registry, http, running
from cartola.serving.client import ServingClient, ServingError
from cartola.serving.guards import (TOKEN_ENV, TokenError, check_exposure, is_loopback,
                                    read_token)
from cartola.serving.workers import cores

PREDICT = f"/v1/models/{NAME}:predict"
TOKEN = "s3cret-token-for-tests-0123456789"
MB = 1024 * 1024


def rss_mb(pid=None) -> float:
    """Resident memory of a process (default: this one), in MiB."""
    return psutil.Process(pid).memory_info().rss / MB


def raw_request(url, method, path, body=b"", headers=None):
    """(status, parsed JSON or {"text": ...}, headers) on a fresh connection, any body bytes
    and headers."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data or b"{}"), response.headers
        except ValueError:
            return response.status, {"text": data.decode("utf-8", "replace")}, response.headers
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Tokens and where the server may listen.

def test_token_comes_from_the_environment_or_an_owner_only_file(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token("") is None
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert read_token(str(path)) == TOKEN
    path.chmod(0o640)
    with pytest.raises(TokenError, match="readable by others .mode 640.; chmod 600") as err:
        read_token(str(path))
    assert TOKEN not in str(err.value)
    with pytest.raises(TokenError, match="No such file"):
        read_token(str(tmp_path / "absent"))
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(TokenError, match="at least 16 characters") as err:
        read_token(str(path))
    assert "short" not in str(err.value)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert read_token(str(path)) == TOKEN  # the environment wins over the file


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("myhost.example", False)])
def test_only_loopback_may_go_without_a_token(host, loopback):
    assert is_loopback(host) == loopback
    check_exposure(host, TOKEN)
    if loopback:
        check_exposure(host, None)
    else:
        with pytest.raises(TokenError, match="CARTOLA_SERVING_TOKEN or --token-file"):
            check_exposure(host, None)


def _serve_command(*args):
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return subprocess.run([sys.executable, "-m", "cartola.serving.server", "--port", "0",
                           *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_serve_beyond_loopback_without_a_token_exits_2_with_one_line(tmp_path):
    result = _serve_command("--host", "0.0.0.0", "--model-dir", str(tmp_path))
    assert result.returncode == 2, result
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "--host 0.0.0.0 exposes the model" in result.stderr
    loose = tmp_path / "token"
    loose.write_text(TOKEN)
    loose.chmod(0o644)
    result = _serve_command("--host", "0.0.0.0", "--token-file", str(loose))
    assert result.returncode == 2 and "chmod 600" in result.stderr, result
    assert TOKEN not in result.stderr + result.stdout
    result = _serve_command("--ssl-certfile", str(loose))
    assert result.returncode == 2 and "both --ssl-certfile and --ssl-keyfile" in result.stderr


def test_requests_need_the_bearer_token_but_health_is_open(tmp_path, caplog):
    caplog.set_level("DEBUG")
    with running(fake_registry(tmp_path), token=TOKEN) as server:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
            status, body, answer = raw_request(
                server.url, "POST", PREDICT, json.dumps({"instances": [ROW]}).encode(),
                {"Content-Type": "application/json", **headers})
            assert status == 401 and "bearer token" in body["error"], headers
            assert answer["WWW-Authenticate"].startswith("Bearer")
        for path in (f"/v1/models/{NAME}", f"/v1/models/{NAME}/metadata", "/metrics",
                     "/docs", "/openapi.json"):
            assert raw_request(server.url, "GET", path)[0] == 401, path
        status, body, _ = raw_request(server.url, "GET", "/health")
        assert (status, body) == (200, {"status": "ok"})  # no name, no version
        client = ServingClient(server.url, NAME, token=TOKEN)
        assert client.predict([ROW]) == [pytest.approx(0.1)]
        assert client.served_versions() == [1]
        with pytest.raises(ServingError) as err:
            ServingClient(server.url, NAME, token="").predict([ROW])
        assert err.value.status == 401
        status, _, _ = raw_request(server.url, "GET", "/metrics",
                                   headers={"Authorization": f"bearer {TOKEN}"})
        assert status == 200
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_client_reads_the_token_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with running(fake_registry(tmp_path), token=TOKEN) as server:
        assert ServingClient(server.url, NAME).predict([ROW]) == [pytest.approx(0.1)]


# --------------------------------------------------------------------------------------------
# Load shedding.

def test_past_max_inflight_requests_get_503_with_retry_after(tmp_path):
    gate = threading.Event()
    slow = FakeModel(1, gate=gate)
    registry = fake_registry(tmp_path, loader=lambda path, v: slow)
    with running(registry, max_inflight=2) as server:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(
            http(server, "POST", PREDICT, {"instances": [ROW]}))) for _ in range(2)]
        for thread in threads:
            thread.start()
        assert slow.entered.wait(10)
        deadline = time.monotonic() + 10
        while len(slow.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        status, body, headers = http(server, "POST", PREDICT, {"instances": [ROW]})
        assert time.perf_counter() - started < 1.0  # at once, not after the running ones
        assert status == 503 and headers["Retry-After"] == "1", body
        assert "server busy: 2 requests in flight" in body["error"]
        assert raw_request(server.url, "GET", "/health")[0] == 200  # never shed
        scrape = raw_request(server.url, "GET", "/metrics")[1]["text"]
        assert 'endpoint="predict",method="POST",status="503"} 1.0' in scrape
        gate.set()
        for thread in threads:
            thread.join(10)
        assert [a[0] for a in answers] == [200, 200]
        assert http(server, "POST", PREDICT, {"instances": [ROW]})[0] == 200


# --------------------------------------------------------------------------------------------
# Hostile bodies.

def _hostile(url, name, path=PREDICT, auth=None):
    """(status, parsed JSON, headers) of one hostile request named ``name``."""
    def post(body, content_type="application/json"):
        return raw_request(url, "POST", path, body, {"Content-Type": content_type,
                                                     **(auth or {})})
    if name == "depth bomb":
        return post(b"[" * 100_000 + b"]" * 100_000)
    if name == "10 MB string":
        return post(json.dumps({"instances": [dict(ROW, s="x" * (10 * MB))]}).encode())
    if name == "wrong content type":
        return post(b"instances=1", "application/x-www-form-urlencoded")
    literals = {"NaN required": b'{"instances": [{"a": NaN, "n": 1, "s": "x"}]}',
                "Infinity": b'{"instances": [{"a": Infinity, "n": 1, "s": "x"}]}',
                "-Infinity": b'{"instances": [{"a": -Infinity, "n": 1, "s": "x"}]}',
                "NaN instances": b'{"instances": NaN}',
                "list for a number": b'{"instances": [{"a": [1, 2], "n": 1, "s": "x"}]}',
                "object for a number": b'{"instances": [{"a": {"b": 1}, "n": 1, "s": "x"}]}'}
    return post(literals[name])


HOSTILE = [("depth bomb", 400, "nested too deeply"),
           ("10 MB string", 413, "over the limit"),
           ("wrong content type", 415, "is not JSON"),
           ("NaN required", 400, "is required"),
           ("Infinity", 400, "must be finite"),
           ("-Infinity", 400, "must be finite"),
           ("NaN instances", 400, "non-empty list"),
           ("list for a number", 400, "must be a number, got list"),
           ("object for a number", 400, "must be a number, got dict")]


def test_hostile_requests_get_a_4xx_and_memory_stays_bounded(tmp_path):
    with running(fake_registry(tmp_path), max_body_bytes=8 * MB) as server:
        for name, status, message in HOSTILE:  # once, to warm allocator and caches
            got, body, _ = _hostile(server.url, name)
            assert got == status and message in body["error"], (name, body)
            assert len(body["error"]) < 300, name  # one line, never the value echoed whole
        before = rss_mb()
        for _ in range(5):
            for name, status, _message in HOSTILE:
                assert _hostile(server.url, name)[0] == status
        grown = rss_mb() - before
        assert http(server, "POST", PREDICT, {"instances": [ROW]})[0] == 200
        # An optional number may be NaN: TF Serving's token for a missing value.
        assert raw_request(server.url, "POST", PREDICT,
                           b'{"instances": [{"a": 1.0, "n": NaN, "s": "x"}]}',
                           {"Content-Type": "application/json"})[0] == 200
    assert grown < 64, f"RSS grew {grown:.0f} MiB over 45 hostile requests"


def _idle_connections(port, count, partial=False):
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if partial:  # headers started, never finished
            sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    return sockets


def test_thousands_of_idle_connections_do_not_stop_the_server(tmp_path):
    with running(fake_registry(tmp_path)) as server:
        port = server.server_address[1]
        before = rss_mb()
        sockets = _idle_connections(port, 2000) + _idle_connections(port, 500, partial=True)
        try:
            time.sleep(0.5)
            started = time.perf_counter()
            status, _, _ = http(server, "POST", PREDICT, {"instances": [ROW]})
            assert status == 200 and time.perf_counter() - started < 2.0
            grown = rss_mb() - before
        finally:
            for sock in sockets:
                sock.close()
        assert http(server, "GET", f"/v1/models/{NAME}")[0] == 200
    assert grown < 100, f"RSS grew {grown:.0f} MiB for 2,500 idle connections"


# --------------------------------------------------------------------------------------------
# Several workers, the real model, SIGTERM under load.

@contextlib.contextmanager
def served(model_dir: Path, name: str, *args, workers: int = 2, env=None):
    """``python -m cartola.serving.server --workers N`` on a free port until the block ends
    (then SIGTERM); yields (process, URL, output lines) once every worker is ready."""
    command = [sys.executable, "-m", "cartola.serving.server", "--model-dir", str(model_dir),
               "--model-name", name, "--port", "0", "--no-request-log", "--poll-seconds",
               "0.5", "--workers", str(workers), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            urls = [m[1] for m in map(re.compile(r"listening on (\S+) ").search, lines) if m]
            if urls and sum("ready: version" in line for line in lines) >= workers:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the server did not start:\n" + "".join(lines[-30:]))
        yield proc, urls[0], lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(10)


@pytest.fixture(scope="module")
def real_model(pushed_project, tmp_path_factory):
    """(config, folder of versions) holding a copy of the pushed version 1."""
    config, _ = pushed_project
    base = tmp_path_factory.mktemp("limits") / config.model_name
    shutil.copytree(config.model_serving_dir / "1", base / "1")
    return config, base


def _workers(proc):
    return [child.pid for child in psutil.Process(proc.pid).children()
            if "spawn_main" in " ".join(child.cmdline())]


@pytest.mark.e2e
def test_workers_share_the_socket_and_the_metrics_and_shed_nothing_in_normal_use(
        real_model, tmp_path):
    config, base = real_model
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    rows = sample_rows(config, 10)
    with served(base, config.model_name, "--host", "0.0.0.0", "--token-file",
                str(token_file)) as (proc, url, lines):
        url = url.replace("0.0.0.0", "127.0.0.1")
        workers = _workers(proc)
        assert len(workers) == 2
        threads = str(max(1, cores() // 2))  # the cores shared out between the workers
        assert f"({threads} TensorFlow thread" in "".join(lines)
        assert {psutil.Process(pid).environ()["TF_NUM_INTRAOP_THREADS"]
                for pid in workers} == {threads}
        for _ in range(40):  # a fresh connection each: the kernel spreads them over workers
            client = ServingClient(url, config.model_name, token=TOKEN)
            assert len(client.predict(rows)) == 10
            client.close()
        with pytest.raises(ServingError) as err:
            ServingClient(url, config.model_name, token="").predict(rows)
        assert err.value.status == 401
        text = raw_request(url, "GET", "/metrics",
                           headers={"Authorization": f"Bearer {TOKEN}"})[1]["text"]
        counted = re.search(r'cartola_requests_total\{endpoint="predict",method="POST",'
                            r'status="200"\} (\S+)', text)
        assert counted and float(counted[1]) == 40.0  # summed over both workers
        assert 'cartola_model_loads_total{result="ok"} 2.0' in text
        assert "cartola_model_version 1.0" in text
        grown = _hostile_growth(url, f"/v1/models/{config.model_name}:predict", workers)
        assert ServingClient(url, config.model_name, token=TOKEN).predict(rows)
        # A newly pushed version reaches every worker.
        shutil.copytree(base / "1", base / "2")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum("version 2" in line
                                                  for line in lines) < 2:
            time.sleep(0.2)
        assert sum("version 2" in line for line in lines) >= 2, "".join(lines[-20:])
        for _ in range(10):
            client = ServingClient(url, config.model_name, token=TOKEN)
            client.predict(rows)
            assert client.last_version == "2"
            client.close()
    assert TOKEN not in "".join(lines)
    assert grown < 64, f"a worker's RSS grew {grown:.0f} MiB over 9 hostile requests"


def _hostile_growth(url, path, workers):
    """The largest RSS growth (MiB) of a worker over 3 rounds of the body-level attacks."""
    before = {pid: rss_mb(pid) for pid in workers}
    for _ in range(3):
        for name, status, message in HOSTILE[:3]:
            got, body, _ = _hostile(url, name, path, {"Authorization": f"Bearer {TOKEN}"})
            assert got == status and message in body["error"], (name, body)
    return max(rss_mb(pid) - before[pid] for pid in workers)


@pytest.mark.e2e
def test_sigterm_under_load_finishes_in_flight_requests_and_resets_none(real_model):
    config, base = real_model
    rows = sample_rows(config, 10)
    body = json.dumps({"signature_name": "predict_raw", "instances": rows}).encode()
    path = f"/v1/models/{config.model_name}:predict"
    outcomes, stop = [], threading.Event()
    with served(base, config.model_name) as (proc, url, lines):
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)

        def client():
            conn = HTTPConnection(host, int(port), timeout=30)
            while not stop.is_set():
                try:  # keep-alive; http.client reconnects after a Connection: close answer
                    conn.request("POST", path, body=body,
                                 headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    outcomes.append(("ok", response.status))
                except ConnectionRefusedError:
                    outcomes.append(("refused", None))  # closed for new connections: fine
                    return
                except (OSError, HTTPException) as err:
                    outcomes.append(("error", repr(err)))
                    return

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # under load
        answered_before = len(outcomes)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)
        stop.set()
        for thread in threads:
            thread.join(30)
    errors = [detail for kind, detail in outcomes if kind == "error"]
    statuses = {detail for kind, detail in outcomes if kind == "ok"}
    assert not errors, errors[:5]
    assert statuses == {200}, statuses
    assert answered_before > 50
    assert len(outcomes) > answered_before  # answers (and refusals) after the signal
    assert sum(kind == "refused" for kind, _ in outcomes) == 16  # each client, at the end
    assert "Traceback" not in "".join(lines), "".join(lines[-30:])
