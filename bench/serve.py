"""Benchmark: the REST server against calling the SavedModel in-process.

Starts ``python -m cartola.serving.server`` on 127.0.0.1 in a subprocess, then measures in one
run, on the same rows:

* single-row latency (p50, p99) over ``--requests`` sequential predictions;
* batch throughput (rows/s) over ``--batches`` predictions of ``--batch-rows`` rows;
* the request log's cost: single-row HTTP latency against a second server that logs every
  row (to a temporary folder) and the first one, which logs nothing, in alternating blocks
  so both see the same machine load; printed as p99(on) / p99(off).

In-process is measured twice: the server's own code path (validate raw features, build
tf.Examples, call ``serving_default``) and the bare signature call on prebuilt examples. HTTP
uses :class:`cartola.serving.client.ServingClient` (``predict_raw`` contract, one keep-alive
connection). Loops are bounded; nothing leaves the loopback interface.

    python bench/serve.py [--model-dir serving_model/cartola_pro] [--requests 500]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
from cartola.config import load_config
from cartola.data.spans import latest_folder
from cartola.serving.request_log import logged_files, read_logged
from cartola.serving.client import ServingClient
from cartola.serving.model import ServedModel, build_examples, columns_from_instances
from cartola.published.versions import model_versions


def _rows(config, features, count: int) -> List[Dict]:
    """``count`` rows of raw features from the configured data, else made up (seeded)."""
    files = sorted(latest_folder(config.data_dir, config.span_pattern).glob("*.csv"))
    if files:
        frame = pd.read_csv(files[0], nrows=count, usecols=list(features))
        while len(frame) < count:
            frame = pd.concat([frame, frame]).iloc[:count]
        return [{name: (None if pd.isna(value) else value.item() if hasattr(value, "item")
                        else value) for name, value in record.items()}
                for record in frame.to_dict("records")]
    rng = np.random.default_rng(0)
    return [{name: (int(rng.integers(0, 10)) if f.kind == "int" else "x" if f.kind == "string"
                    else float(rng.random())) for name, f in features.items()}
            for _ in range(count)]


def _timed(call: Callable[[], object], repeat: int) -> np.ndarray:
    seconds = np.empty(repeat)
    for i in range(repeat):
        started = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - started
    return seconds


def _start_server(model_dir: Path, name: str,
                  log_dir: Optional[Path] = None) -> (subprocess.Popen, str):
    """A server subprocess logging every row to ``log_dir``/<name>, or nothing."""
    command = [sys.executable, "-m", "cartola.serving.server", "--model-dir", str(model_dir),
               "--model-name", name, "--host", "127.0.0.1", "--port", "0",
               "--poll-seconds", "60", "--workers", "1"]
    command += (["--request-log-dir", str(log_dir), "--request-log-sample", "1"] if log_dir
                else ["--no-request-log"])
    # Not a `with` block: the caller stops the server when the measurements are done.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.DEVNULL, text=True)
    found: Dict[str, str] = {}

    def read():
        for line in proc.stdout:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                found["url"] = match[1]
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=180)
    if "url" not in found:
        proc.kill()
        raise SystemExit("bench: the server did not start within 180 s")
    return proc, found["url"]


def _measure(model, client, rows, args) -> Dict[str, tuple]:
    """{path: (p50 ms, p99 ms, rows/s)} for in-process and HTTP calls on the same rows."""
    row = [rows[0]]
    examples = build_examples(columns_from_instances(rows, model.features), model.features)
    paths = {
        "in-process, signature only": (lambda: model.predict_serialized(examples[:1]),
                                       lambda: model.predict_serialized(examples)),
        "in-process, server code path": (lambda: model.predict_instances(row),
                                         lambda: model.predict_instances(rows)),
        "HTTP (REST, keep-alive)": (lambda: client.predict(row), lambda: client.predict(rows)),
    }
    results = {}
    for name, (single, batch) in paths.items():
        _timed(single, args.warmup)
        _timed(batch, max(2, args.warmup // 10))
        latency = _timed(single, args.requests) * 1000
        batch_seconds = _timed(batch, args.batches)
        results[name] = (np.percentile(latency, 50), np.percentile(latency, 99),
                         args.batch_rows * args.batches / batch_seconds.sum())
    return results


def _logging_cost(clients: Dict[str, ServingClient], row, args) -> Dict[str, np.ndarray]:
    """Single-row latencies (ms) per server, measured in alternating blocks of 50."""
    for client in clients.values():
        _timed(lambda c=client: c.predict(row), args.warmup)
    latency: Dict[str, List[np.ndarray]] = {name: [] for name in clients}
    for start in range(0, args.requests, 50):
        for name, client in clients.items():
            block = min(50, args.requests - start)
            latency[name].append(_timed(lambda c=client: c.predict(row), block) * 1000)
    return {name: np.concatenate(parts) for name, parts in latency.items()}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, as `docker stop` does: the server closes its request log on the way out."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _print_logging(latency: Dict[str, np.ndarray], log_folder: Path) -> None:
    files = logged_files(log_folder)
    rows = sum(1 for _ in read_logged(files))
    print(f"request log: single-row HTTP latency, {len(latency['off'])} requests each, "
          "alternating blocks of 50")
    print(f"{'logging':<10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in latency.items():
        print(f"{name:<10} {np.percentile(values, 50):>8.2f} {np.percentile(values, 99):>8.2f}")
    ratio = np.percentile(latency["on"], 99) / np.percentile(latency["off"], 99)
    print(f"p99(on) / p99(off) = {ratio:.2f}; p50 ratio "
          f"{np.percentile(latency['on'], 50) / np.percentile(latency['off'], 50):.2f}; "
          f"{rows:,} rows logged in {len(files)} files")


def _print(results: Dict[str, tuple], header: str, max_diff: float) -> None:
    print(header)
    print(f"{'path':<30} {'p50 ms':>8} {'p99 ms':>8} {'rows/s':>10}")
    for name, (p50, p99, throughput) in results.items():
        print(f"{name:<30} {p50:>8.2f} {p99:>8.2f} {throughput:>10,.0f}")
    http_p50, http_p99, http_rps = results["HTTP (REST, keep-alive)"]
    for base in ("in-process, server code path", "in-process, signature only"):
        p50, p99, rps = results[base]
        print(f"HTTP vs {base}: latency x{http_p50 / p50:.1f} (p50), x{http_p99 / p99:.1f} "
              f"(p99); throughput {http_rps / rps:.0%}")
    print(f"max |HTTP - in-process| over the batch rows: {max_diff:.1e}")


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model-dir", help="folder of versions (default: config serving dir)")
    parser.add_argument("--requests", type=int, default=500, help="single-row requests")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument("--batches", type=int, default=30, help="batch requests")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    args = parser.parse_args()
    config = load_config()
    model_dir = Path(args.model_dir) if args.model_dir else config.model_serving_dir
    versions = model_versions(model_dir)
    if not versions:
        raise SystemExit(f"bench: no model version under {model_dir}; run `make run` first or "
                         "pass --model-dir")
    with tempfile.TemporaryDirectory(prefix="bench-request-log-") as log_dir:
        procs = {}
        try:
            procs["off"], url = _start_server(model_dir, config.model_name)
            procs["on"], logging_url = _start_server(model_dir, config.model_name,
                                                     Path(log_dir))
            model = ServedModel.load(model_dir / str(versions[-1]), versions[-1])
            rows = _rows(config, model.features, args.batch_rows)
            clients = {"off": ServingClient(url, config.model_name),
                       "on": ServingClient(logging_url, config.model_name)}
            for client in clients.values():
                client.wait_for_version(versions[-1], timeout=120)
            client = clients["off"]
            max_diff = float(np.max(np.abs(np.asarray(client.predict(rows), dtype=np.float32)
                                           - model.predict_instances(rows))))
            results = _measure(model, client, rows, args)
            latency = _logging_cost(clients, [rows[0]], args)
        finally:
            for proc in procs.values():
                _stop(proc)
        _print(results, f"model {model_dir}/{versions[-1]}; {args.requests} single-row "
                        f"requests, {args.batches} x {args.batch_rows}-row batches; CPUs: "
                        f"{os.cpu_count()}", max_diff)
        _print_logging(latency, Path(log_dir) / config.model_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
