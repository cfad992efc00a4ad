"""Benchmark: the model server on http.server against the same API on FastAPI + uvicorn.

Decision input for moving :mod:`cartola.serving.server` onto :mod:`cartola.serving.app`
(switch only if p99 stays within 2x). Each server runs in its own subprocess on 127.0.0.1,
all over a copy of the same model version, so none shares a GIL with the client or another
server. Servers:

* ``http.server``: ``ModelServer`` (ThreadingHTTPServer), what ``cartola serve`` runs;
* ``fastapi``: ``create_app(threaded=True)``, predict in Starlette's thread pool (``def``);
* ``fastapi-async``: ``create_app(threaded=False)``, predict on the event loop (``async def``).

Per round, servers take turns (blocks of ``--block`` requests, order rotated every round, so
load from other work on a shared machine hits them alike):

* single-row latency p50/p99: ``--requests`` sequential predicts on one keep-alive connection;
* batch throughput: ``--batches`` requests of ``--batch-rows`` rows, one connection;
* concurrent throughput: the same batches from ``--clients`` connections at once;
* mixed p99: single-row latency while another connection sends batches (head-of-line
  blocking: what an event loop busy with TensorFlow costs the small requests).

Requests are prebuilt JSON bytes (``predict_raw``, one row repeated from the data) sent with
http.client, so client time is the same for every server. Answers are checked: status 200 and
the same predictions from every server.

    python bench/serve_frameworks.py [--model-dir serving_model/cartola_pro/1] [--rounds 3]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
from cartola.config import load_config
from cartola.data.spans import latest_folder
from cartola.versions import model_versions

SERVERS = ("http.server", "fastapi", "fastapi-async")
BASELINE = "http.server"


# --------------------------------------------------------------------------------------------
# Server side: `--serve KIND` runs one server in this (sub)process.

def _serve(kind: str, base: Path, name: str) -> int:
    """Serve ``base`` until stdin closes (the benchmark ended or died: no orphan servers)."""
    # pylint: disable=import-outside-toplevel
    from cartola.serving.server import ModelRegistry, ModelServer
    registry = ModelRegistry(base, name, poll_seconds=3600)
    registry.refresh()
    if registry.current is None:
        raise SystemExit(f"bench: cannot load a version under {base}")
    if kind == "http.server":
        server = ModelServer(registry, port=0)
        server.start_background()
    else:
        from cartola.serving.app import create_app, start_background
        server = start_background(create_app(registry, threaded=kind == "fastapi"))
    print(f"listening on {server.url}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
    return 0


def _start(kind: str, base: Path, name: str) -> Tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "--serve", kind, "--base", str(base), "--name", name]
    log = base.parent / f"{kind}.log"  # TensorFlow's start-up noise; shown if the start fails
    # Not `with` blocks: the caller stops the servers when every measurement is done.
    proc = subprocess.Popen(command, stdin=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE,
                            stderr=log.open("w"),  # pylint: disable=consider-using-with
                            text=True)
    for line in proc.stdout:  # TensorFlow loads first: tens of seconds on a busy machine
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match[1]
    proc.kill()
    raise SystemExit(f"bench: the {kind} server did not start:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


# --------------------------------------------------------------------------------------------
# Client side.

class _Conn:
    """One keep-alive connection posting prebuilt bodies."""

    def __init__(self, url: str, path: str):
        host, port = url.rsplit("/", 1)[-1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.path = path

    def post(self, body: bytes) -> bytes:
        """The answer's body; an error status stops the benchmark."""
        self.conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"bench: HTTP {response.status}: {data[:300]!r}")
        return data

    def timed(self, body: bytes, count: int) -> np.ndarray:
        """Seconds of each of ``count`` sequential requests."""
        seconds = np.empty(count)
        for i in range(count):
            started = time.perf_counter()
            self.post(body)
            seconds[i] = time.perf_counter() - started
        return seconds

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _concurrent(url: str, path: str, body: bytes, clients: int, per_client: int) -> float:
    """Wall seconds for ``clients`` connections sending ``per_client`` requests each."""
    conns = [_Conn(url, path) for _ in range(clients)]
    for conn in conns:
        conn.post(body)  # connect and warm up outside the timing
    barrier = threading.Barrier(clients + 1)

    def work(conn):
        barrier.wait()
        conn.timed(body, per_client)

    threads = [threading.Thread(target=work, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return elapsed


def _mixed(url: str, path: str, single: bytes, batch: bytes, count: int) -> np.ndarray:
    """Single-row latencies while a second connection sends batches without pause."""
    stop = threading.Event()
    background = _Conn(url, path)

    def load():
        while not stop.is_set():
            background.post(batch)

    thread = threading.Thread(target=load)
    thread.start()
    conn = _Conn(url, path)
    try:
        time.sleep(0.05)
        return conn.timed(single, count)
    finally:
        stop.set()
        thread.join()
        conn.close()
        background.close()


def _rows(config, count: int) -> List[dict]:
    """``count`` rows of the model's raw features from the configured data."""
    files = sorted(latest_folder(config.data_dir, config.span_pattern).glob("*.csv"))
    if not files:
        raise SystemExit(f"bench: no CSV under {config.data_dir}")
    frame = pd.read_csv(files[0], nrows=count, usecols=list(config.numeric_features))
    while len(frame) < count:
        frame = pd.concat([frame, frame]).iloc[:count]
    return [{name: (None if pd.isna(value) else value.item() if hasattr(value, "item")
                    else value) for name, value in record.items()}
            for record in frame.to_dict("records")]


def _body(rows: List[dict]) -> bytes:
    # NaN marks a missing number, as ServingClient sends it.
    return json.dumps({"signature_name": "predict_raw", "instances": [
        {k: float("nan") if v is None else v for k, v in row.items()} for row in rows]}).encode()


def _model_version_dir(given: Optional[str], config) -> Path:
    """The version folder to serve: ``given`` (a version folder, or a model folder whose
    newest version is taken), else the newest pushed version of the config."""
    folder = Path(given) if given else config.model_serving_dir
    if folder.name.isdigit() and (folder / "saved_model.pb").is_file():
        return folder
    versions = model_versions(folder)
    if not versions:
        raise SystemExit(
            f"bench: no model version under {folder}. Run `make run` first, or pass "
            "--model-dir with a pushed version folder, e.g. one left by an earlier test run: "
            "ls /tmp/pytest-of-*/pytest-*/*/project/serving_model/*/")
    return folder / str(versions[-1])


def _measure(urls: Dict[str, str], path: str, bodies: Dict[str, bytes], args,
             order: List[str]) -> Dict[str, Dict[str, object]]:
    """One round: every measurement, servers taking turns in ``order``."""
    conns = {kind: _Conn(urls[kind], path) for kind in order}
    out: Dict[str, Dict[str, object]] = {kind: {"lat": [], "batch": [], "mixed": []}
                                         for kind in order}
    for kind in order:  # warm-up: thread pools, TF's per-shape caches, connections
        conns[kind].timed(bodies["single"], args.warmup)
        conns[kind].timed(bodies["batch"], 2)
    for start in range(0, args.requests, args.block):
        for kind in order:
            out[kind]["lat"].append(conns[kind].timed(
                bodies["single"], min(args.block, args.requests - start)))
    for _ in range(args.batches):
        for kind in order:
            out[kind]["batch"].append(conns[kind].timed(bodies["batch"], 1))
    for kind in order:
        out[kind]["conc"] = _concurrent(urls[kind], path, bodies["batch"], args.clients,
                                        max(1, args.batches // args.clients))
    for start in range(0, args.mixed, args.block):
        for kind in order:
            out[kind]["mixed"].append(_mixed(urls[kind], path, bodies["single"],
                                             bodies["batch"], min(args.block, args.mixed - start)))
    for conn in conns.values():
        conn.close()
    rows_sent = args.batch_rows * args.clients * max(1, args.batches // args.clients)
    return {kind: {
        "lat": np.concatenate(result["lat"]) * 1000,
        "mixed": np.concatenate(result["mixed"]) * 1000,
        "rows/s": args.batch_rows * args.batches / np.concatenate(result["batch"]).sum(),
        "conc rows/s": rows_sent / result["conc"]} for kind, result in out.items()}


def _table(results: Dict[str, Dict[str, object]], title: str) -> None:
    print(title)
    print(f"  {'server':<14} {'p50 ms':>7} {'p99 ms':>7} {'batch rows/s':>13} "
          f"{'N-conn rows/s':>14} {'mixed p50':>10} {'mixed p99':>10}")
    for kind, res in results.items():
        print(f"  {kind:<14} {np.percentile(res['lat'], 50):>7.2f} "
              f"{np.percentile(res['lat'], 99):>7.2f} {res['rows/s']:>13,.0f} "
              f"{res['conc rows/s']:>14,.0f} {np.percentile(res['mixed'], 50):>10.1f} "
              f"{np.percentile(res['mixed'], 99):>10.1f}")


def _ratios(results: Dict[str, Dict[str, object]]) -> Dict[str, Dict[str, float]]:
    base = results[BASELINE]
    return {kind: {
        "p50": np.percentile(res["lat"], 50) / np.percentile(base["lat"], 50),
        "p99": np.percentile(res["lat"], 99) / np.percentile(base["lat"], 99),
        "batch": res["rows/s"] / base["rows/s"],
        "conc": res["conc rows/s"] / base["conc rows/s"],
        "mixed p99": np.percentile(res["mixed"], 99) / np.percentile(base["mixed"], 99)}
        for kind, res in results.items() if kind != BASELINE}


def _print_ratios(ratios: Dict[str, Dict[str, float]], indent: str = "  ") -> None:
    for kind, ratio in ratios.items():
        print(f"{indent}{kind}/{BASELINE}: latency p50 x{ratio['p50']:.2f}, "
              f"p99 x{ratio['p99']:.2f}; batch throughput x{ratio['batch']:.2f}, "
              f"concurrent x{ratio['conc']:.2f}; mixed p99 x{ratio['mixed p99']:.2f}")


def _check_same_answers(urls: Dict[str, str], path: str, body: bytes) -> None:
    answers = {kind: json.loads(_Conn(url, path).post(body)) for kind, url in urls.items()}
    first = answers[BASELINE]
    for kind, answer in answers.items():
        if answer != first:
            raise SystemExit(f"bench: {kind} answers differently from {BASELINE}")


def main() -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model-dir", help="a version folder, or a folder of versions "
                        "(default: newest under the config's serving_model/<name>)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated, from %(default)s (http.server is required)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--requests", type=int, default=1000, help="single-row requests")
    parser.add_argument("--block", type=int, default=100, help="requests per turn")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument("--batches", type=int, default=20, help="batch requests")
    parser.add_argument("--clients", type=int, default=4, help="connections, concurrent run")
    parser.add_argument("--mixed", type=int, default=200,
                        help="single-row requests while batches run")
    parser.add_argument("--warmup", type=int, default=50, help="untimed single-row calls")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve(args.serve, Path(args.base), args.name)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if BASELINE not in kinds or not set(kinds) <= set(SERVERS):
        parser.error(f"--servers: choose from {SERVERS}, {BASELINE} included")
    config = load_config()
    version_dir = _model_version_dir(args.model_dir, config)
    rows = _rows(config, args.batch_rows)
    bodies = {"single": _body(rows[:1]), "batch": _body(rows)}
    path = f"/v1/models/{config.model_name}:predict"
    with tempfile.TemporaryDirectory(prefix="bench-frameworks-") as tmp:
        base = Path(tmp) / config.model_name  # a copy: no watcher sees anyone else's pushes
        shutil.copytree(version_dir, base / "1")
        procs: Dict[str, subprocess.Popen] = {}
        try:
            urls = {}
            for kind in kinds:
                procs[kind], urls[kind] = _start(kind, base, config.model_name)
            _check_same_answers(urls, path, bodies["batch"])
            print(f"model {version_dir}; per round: {args.requests} single-row requests, "
                  f"{args.batches} x {args.batch_rows}-row batches on 1 and on {args.clients} "
                  f"connections, {args.mixed} single-row requests under batch load; "
                  f"CPUs: {os.cpu_count()}")
            rounds = []
            for number in range(args.rounds):
                order = kinds[number % len(kinds):] + kinds[:number % len(kinds)]
                rounds.append(_measure(urls, path, bodies, args, order))
                _table(rounds[-1], f"round {number + 1} (turn order {', '.join(order)})")
                _print_ratios(_ratios(rounds[-1]))
        finally:
            for proc in procs.values():
                _stop(proc)
    pooled = {kind: {"lat": np.concatenate([r[kind]["lat"] for r in rounds]),
                     "mixed": np.concatenate([r[kind]["mixed"] for r in rounds]),
                     "rows/s": float(np.median([r[kind]["rows/s"] for r in rounds])),
                     "conc rows/s": float(np.median([r[kind]["conc rows/s"] for r in rounds]))}
              for kind in kinds}
    _table(pooled, f"all {args.rounds} rounds (latencies pooled, throughputs median)")
    _print_ratios(_ratios(pooled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
